"""Two plain sections of the report page: the latency table and the run's config.

The latency plot shows the predictor's error at a glance; the table gives the numbers a reader quotes.
The config is what reproduces the run, so the page carries it verbatim (escaped, collapsed).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from elastic_lm.evaluate.metrics import mape
from elastic_lm.report.records import LatencyCheck


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def latency_section(checks: Sequence[LatencyCheck]) -> str:
    """Predicted and measured latency per re-measured architecture, the error of each, and the MAPE."""
    if not checks:
        return ""
    rows = []
    for c in checks:
        error = 100.0 * (c.predicted_ms - c.measured_ms) / c.measured_ms if c.measured_ms else float("nan")
        cells = (f"{c.predicted_ms:.3f}", f"{c.measured_ms:.3f}", f"{error:+.1f}%")
        rows.append(
            f"<tr><td>{_e(c.label)}</td>" + "".join(f"<td class='num'>{v}</td>" for v in cells) + "</tr>"
        )
    total = 100.0 * mape([c.predicted_ms for c in checks], [c.measured_ms for c in checks])
    head = "".join(f"<th>{h}</th>" for h in ("architecture", "predicted ms", "measured ms", "error"))
    return (
        "<h2>Latency: predicted and measured</h2>"
        f"<p class='muted'>{len(checks)} architectures re-measured on this machine "
        f"(<code>profile/latency_check.json</code>); mean absolute percentage error {total:.1f}%.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def config_section(run_dir: Path) -> str:
    """The run's saved ``config.yaml``, collapsed; empty when the run has none."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace")
    return (
        "<details id='run-config'><summary>Run config (<code>config.yaml</code>: "
        "<code>elastic-lm run RUN_DIR</code> reproduces the run)</summary>"
        f"<pre>{_e(text)}</pre></details>"
    )


__all__ = ["config_section", "latency_section"]
