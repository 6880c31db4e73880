"""The interactive report: plotly figures with plotly.js inlined, drawn in a real headless Chromium.

The browser test needs Debian's ``chromium`` package (``.ci/run`` installs it when it runs as root) and
the ``playwright`` Python package (dev extra) to drive it; without either it skips and says which.
Playwright's own browser download is never used: it needs a CDN this project's machines cannot reach.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from elastic_lm.architecture import Architecture
from elastic_lm.report import write_report
from elastic_lm.report.interactive import plotly_bundle
from elastic_lm.report.labels import describe_architecture
from test_report import OBJ_ACC, OBJ_LOSS, OBJ_PARAMS, _pareto_numbers, _synthetic_trials, make_run

pytest.importorskip("plotly")

OBJECTIVES = [OBJ_LOSS, OBJ_PARAMS, OBJ_ACC]
PAIRS = ["pareto_val_loss_vs_params", "pareto_val_loss_vs_accuracy", "pareto_accuracy_vs_params"]
EVIL = "</script><script>alert('x')</script>"


def _expected_markers(run: Path) -> dict[str, int]:
    """Markers each figure must draw, counted from the run's files, not from the report's code."""
    trials = json.loads((run / "search" / "trials.json").read_text())
    baselines = json.loads((run / "search" / "baselines.json").read_text())
    summary = json.loads((run / "search" / "summary.json").read_text())
    usable = [t for t in trials if t["state"] == "COMPLETE" and t["feasible"]]
    # every objective is reported by every synthetic trial and baseline, so every pair draws them all
    out = {stem: len(trials) + len(baselines) for stem in PAIRS}
    out["history"] = len(usable) * len(OBJECTIVES)
    out["hypervolume"] = len(summary["hypervolume"])
    return out


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = make_run(tmp_path_factory.mktemp("live") / "elm-live", _synthetic_trials(), OBJECTIVES)
    baselines = json.loads((run / "search" / "baselines.json").read_text())
    baselines[0]["name"] = EVIL  # user input that must stay text, in the page and in the plot
    (run / "search" / "baselines.json").write_text(json.dumps(baselines))
    write_report(run)
    return run


def test_page_inlines_plotly_and_requests_nothing(page: Path) -> None:
    html = (page / "report" / "index.html").read_text()
    bundle = plotly_bundle()
    assert html.count(bundle) == 1  # the installed bundle, inline, once
    html = html.replace(bundle, "")  # its own strings name plotly.com; the browser test checks requests
    assert not re.search(r"""<script[^>]*\ssrc=""", html)
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", html)
    assert EVIL not in html
    assert "alert('x')</script>" not in html
    assert "<img" in html  # the figures without an interactive twin stay PNGs
    assert sorted(re.findall(r"<figure id='fig-([a-z_]+)'><img", html)) == ["latency_check", "train_loss"]
    live = dict(re.findall(r"<figure id='fig-([a-z_]+)' class='interactive[^']*' data-markers='(\d+)'", html))
    assert {k: int(v) for k, v in live.items()} == _expected_markers(page)


def test_hover_text_names_the_architecture_and_every_metric(page: Path) -> None:
    html = (page / "report" / "index.html").read_text()
    trials = {t["number"]: t for t in json.loads((page / "search" / "trials.json").read_text())}
    member = trials[_pareto_numbers(page)[0]]
    arch = describe_architecture(Architecture.from_dict(member["architecture"]))
    text = _hover_of(html, member["number"])
    assert f"trial {member['number']}</b>" in text
    assert arch in text
    for name in member["metrics"]:
        assert f"{name}: " in text


def _hover_of(html: str, number: int) -> str:
    """The first hover text of trial ``number`` in the figures' JSON, decoded."""
    prefix = json.dumps(f"<b>trial {number}</b>")[1:-1]
    prefix = prefix.replace("<", "\\u003c").replace(">", "\\u003e").replace("/", "\\u002f")  # as plotly
    found = re.search('"' + re.escape(prefix) + r'(?:[^"\\]|\\.)*"', html)
    assert found, f"no hover text for trial {number}"
    return str(json.loads(found.group(0)))


def _chromium() -> str:
    for name in (os.environ.get("ELASTIC_LM_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name) if name else None
        if found:
            return found
    pytest.skip("no Chromium on this machine: install Debian's 'chromium' package (.ci/run does as root)")


@pytest.mark.slow
def test_the_page_draws_in_headless_chromium_without_console_errors(page: Path) -> None:
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) drives Chromium")
    events: list[tuple[str, str]] = []
    requests: list[str] = []
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=flags)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.set_default_timeout(120_000)  # a loaded CI machine parses 5 MB of script slowly
            tab.on("console", lambda m: events.append((m.type, m.text)))
            tab.on("pageerror", lambda e: events.append(("pageerror", str(e))))
            tab.on("dialog", lambda d: (events.append(("dialog", d.message)), d.dismiss()))
            tab.on("request", lambda r: requests.append(r.url))
            tab.goto((page / "report" / "index.html").as_uri())
            tab.wait_for_function("document.querySelectorAll('figure.interactive .main-svg').length > 0")
            drawn: dict[str, Any] = tab.evaluate(
                "() => Object.fromEntries(Array.from(document.querySelectorAll('figure.interactive'))"
                ".map(f => [f.id.slice(4), f.querySelectorAll('.scatterlayer .point').length]))"
            )
            legend = tab.evaluate("() => document.querySelector('#fig-pareto_val_loss_vs_params .legend')"
                                  ".textContent")  # fmt: skip
            member = _pareto_numbers(page)[0]
            tab.hover(f"#fig-history .scatterlayer .trace:first-child .point >> nth={_rank(page, member)}",
                      force=True)  # fmt: skip
            tab.wait_for_selector(".hoverlayer .hovertext")
            hover = tab.evaluate("() => document.querySelector('.hoverlayer .hovertext').textContent")
        finally:
            browser.close()
    assert drawn == _expected_markers(page)
    assert [e for e in events if e[0] in ("error", "pageerror", "dialog")] == []
    assert {u.split(":", 1)[0] for u in requests} == {"file"}
    assert EVIL in legend  # shown as text, never run
    assert f"trial {member}" in hover
    assert "val_loss: " in hover
    assert "depth " in hover


def _rank(run: Path, number: int) -> int:
    """Position of trial ``number`` among the usable trials, the history plot's first trace's order."""
    trials = json.loads((run / "search" / "trials.json").read_text())
    usable = sorted(t["number"] for t in trials if t["state"] == "COMPLETE" and t["feasible"])
    return usable.index(number)


def test_without_plotly_the_page_falls_back_to_pngs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("elastic_lm.report.plotly_available", lambda: False)
    run = make_run(tmp_path / "static", _synthetic_trials(12), [OBJ_LOSS, OBJ_PARAMS])
    html = write_report(run).read_text()
    assert "<script" not in html
    assert "class='interactive" not in html
    assert len(re.findall(r"<figure id='fig-[a-z_]+'><img src='data:image/png", html)) == 4
