"""The report: Pareto maths, file inputs, PNGs, the self-contained HTML page and the CLI command."""

from __future__ import annotations

import base64
import csv
import json
import re
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.cli.main import main
from elastic_lm.errors import DataError, UserError
from elastic_lm.report import write_report
from elastic_lm.report.build import axes_for
from elastic_lm.report.inputs import Objective
from elastic_lm.report.labels import describe_architecture, display, format_value

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------- fixtures


def _arch(hidden: int, layers: list[tuple[int, int]]) -> dict[str, Any]:
    """(heads, ffn) per layer; heads 0 means a dropped layer."""
    return Architecture(
        hidden=hidden,
        layers=tuple(LayerArch("bert", heads=h, ffn=f) if h else LayerArch("identity") for h, f in layers),
    ).to_dict()


def _synthetic_trials(n: int = 30) -> list[dict[str, Any]]:
    """Deterministic trials: bigger models are slower, more accurate and have lower loss, plus jitter."""
    trials = []
    for i in range(n):
        hidden = (128, 256, 384)[i % 3]
        depth = 2 + i % 5
        layers = [(4 + 4 * ((i + j) % 2), hidden * 2 * (1 + (i + j) % 2)) for j in range(depth)]
        layers += [(0, 0)] * (6 - depth)
        params = 30_000 * hidden + sum(4 * hidden * hidden + 2 * hidden * f for _, f in layers)
        jitter = ((i * 37) % 11) / 50
        trials.append(
            {
                "number": i,
                "architecture": _arch(hidden, layers),
                "metrics": {
                    "val_loss": round(6.0 - params / 4e6 + jitter, 4),
                    "params": params,
                    "latency_ms": round(1.0 + params / 2e6 + jitter, 3),
                    "accuracy": round(0.5 + params / 1e8 - jitter / 4, 4),
                },
                "feasible": i % 13 != 7,
                "state": "FAIL" if i == 29 else "COMPLETE",
            }
        )
    return trials


OBJ_LOSS = {"name": "val_loss", "direction": "minimize", "unit": "nats/token"}
OBJ_PARAMS = {"name": "params", "direction": "minimize", "unit": "count"}
OBJ_LAT = {"name": "latency_ms", "direction": "minimize", "unit": "ms, batch 1 x 128 tokens"}
OBJ_ACC = {"name": "accuracy", "direction": "maximize", "unit": "fraction"}


def make_run(
    root: Path,
    trials: list[dict[str, Any]],
    objectives: list[dict[str, str]],
    *,
    pareto: list[int] | None = None,
    extras: bool = True,
) -> Path:
    """A run directory as the search/profile/export/train stages would leave it."""
    (root / "search").mkdir(parents=True)
    (root / "search" / "trials.json").write_text(json.dumps(trials))
    summary = {
        "objectives": objectives,
        "strategy": "nsga2",
        "pareto": pareto,
        "hypervolume": [[n, 1.0 - 0.8 / (n + 1)] for n in range(1, len(trials) + 1)],
        "reference_point": {o["name"]: 1.0 for o in objectives},
        "finished_at": "2026-11-21 06:00 UTC",
    }
    (root / "search" / "summary.json").write_text(json.dumps(summary))
    if not extras:
        return root
    baselines = [
        {
            "name": "layer-drop k=4",
            "metrics": {"val_loss": 5.2, "params": 3.1e6, "latency_ms": 2.6, "accuracy": 0.52},
        },
        {
            "name": "hand-designed tiny",
            "metrics": {"val_loss": 5.6, "params": 1.5e6, "latency_ms": 1.9, "accuracy": 0.51},
        },
    ]
    (root / "search" / "baselines.json").write_text(json.dumps(baselines))
    (root / "profile").mkdir()
    checks = [{"label": f"t{i}", "predicted_ms": 1.0 + i, "measured_ms": 1.1 + i * 1.05} for i in range(8)]
    (root / "profile" / "latency_check.json").write_text(json.dumps(checks))
    (root / "export" / "small").mkdir(parents=True)
    index = [{"name": "small", "path": "export/small", "metrics": {"val_loss": 5.3, "params": 2.0e6}}]
    (root / "export" / "index.json").write_text(json.dumps(index))
    (root / "train").mkdir()
    rows = ["step,loss,val_loss,lr"] + [
        f"{s},{6.5 - s / 40:.3f},{'' if s % 20 else f'{6.6 - s / 45:.3f}'},0.001" for s in range(0, 201, 5)
    ]
    (root / "train" / "metrics.csv").write_text("\n".join(rows) + "\n")
    return root


# Hand-checked: params minimised, accuracy MAXIMISED. #2 and #3 are dominated by #1; #6 would dominate
# everything but is infeasible; #7 failed. If "maximize" were ignored the front would be {5} alone.
HAND = [
    (0, 10e6, 0.80, 4.0, True, "COMPLETE"),
    (1, 20e6, 0.85, 3.0, True, "COMPLETE"),
    (2, 20e6, 0.82, 1.0, True, "COMPLETE"),
    (3, 30e6, 0.84, 5.0, True, "COMPLETE"),
    (4, 40e6, 0.90, 8.0, True, "COMPLETE"),
    (5, 5e6, 0.70, 2.0, True, "COMPLETE"),
    (6, 1e6, 0.99, 0.5, False, "COMPLETE"),
    (7, 1e6, 0.99, 0.5, True, "FAIL"),
]


def _hand_trials() -> list[dict[str, Any]]:
    return [
        {
            "number": n,
            "architecture": _arch(128, [(4, 256)] * (1 + n % 3)),
            "metrics": {"params": p, "accuracy": a, "latency_ms": lat},
            "feasible": feasible,
            "state": state,
        }
        for n, p, a, lat, feasible, state in HAND
    ]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _pareto_numbers(run: Path) -> list[int]:
    with (run / "report" / "pareto.csv").open() as handle:
        return sorted(int(row["number"]) for row in csv.DictReader(handle))


# ------------------------------------------------------------------------------------------ pure maths


def test_labels_and_architecture_description() -> None:
    assert display("params").label == "parameters (millions)"
    assert display("params").scale == 1e-6
    assert display("val_loss").label == "validation loss (nats/token)"
    pruned = display("params_nonembedding", "count, without embeddings")  # the prune summary's unit
    assert (pruned.label, pruned.scale) == ("non-embedding parameters (millions)", 1e-6)
    assert display("latency_ms", "ms, batch 1 x 128 tokens").label == "latency (ms, batch 1 x 128 tokens)"
    arch = Architecture(
        hidden=256,
        layers=(LayerArch("bert", heads=4, ffn=512), LayerArch("identity"), LayerArch("sepconv", kernel=5)),
    )
    assert describe_architecture(arch) == "depth 2/3 · hidden 256 · bert/sepconv · 4h/512 – conv5"


def test_table_cells_line_up() -> None:
    assert format_value("params", 20_370_000) == "20.37M"
    assert [format_value("val_loss", v) for v in (1.498, 0.676, 12)] == ["1.4980", "0.6760", "12"]
    assert format_value("val_loss", None) == "–"


def test_cost_goes_on_the_x_axis() -> None:
    loss, params = Objective("val_loss", "minimize"), Objective("params", "minimize")
    acc = Objective("accuracy", "maximize")
    assert axes_for(loss, params) == (params, loss)
    assert axes_for(params, acc) == (params, acc)
    assert axes_for(loss, acc) == (acc, loss)


def test_missing_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "nompl", _hand_trials(), [OBJ_PARAMS, OBJ_ACC], extras=False)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import raise ImportError
    with pytest.raises(UserError, match=r"pip install 'elastic-lm\[report\]'"):
        write_report(run)


# ------------------------------------------------------------------------------------------ full report


@pytest.fixture(scope="module")
def report3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 30-trial, 3-objective run with every optional file, reported once for several tests, in the
    static form a machine without plotly gets (the interactive page: tests/test_report_interactive.py)."""
    run = make_run(
        tmp_path_factory.mktemp("run3") / "elm-demo", _synthetic_trials(), [OBJ_LOSS, OBJ_PARAMS, OBJ_ACC]
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("elastic_lm.report.plotly_available", lambda: False)
        write_report(run)
    return run


def test_report_writes_readable_pngs(report3: Path) -> None:
    pngs = sorted(p.name for p in (report3 / "report").glob("*.png"))
    assert pngs == [
        "hypervolume.png",
        "latency_check.png",
        "pareto_accuracy_vs_params.png",
        "pareto_val_loss_vs_accuracy.png",
        "pareto_val_loss_vs_params.png",
        "train_loss.png",
    ]
    for name in pngs:
        assert _png_size(report3 / "report" / name) == (768, 528)


def test_html_is_self_contained_and_lists_every_pareto_member(report3: Path) -> None:
    page = (report3 / "report" / "index.html").read_text()
    members = _pareto_numbers(report3)
    assert members  # the synthetic data has a non-trivial front
    for number in members:
        assert f"id='trial-{number}'" in page
    assert "<script" not in page
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", page)
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(uris) == 6
    for uri in uris:
        assert base64.b64decode(uri, validate=True)[:8] == PNG_MAGIC
    for text in ("elm-demo", "2026-11-21 06:00 UTC", "layer-drop k=4", "export/small", "<details>"):
        assert text in page


def test_pareto_front_hand_checked_with_maximise_two_objectives(tmp_path: Path) -> None:
    run = make_run(tmp_path / "two", _hand_trials(), [OBJ_PARAMS, OBJ_ACC], pareto=[0, 1, 4, 5], extras=False)
    write_report(run)
    assert _pareto_numbers(run) == [0, 1, 4, 5]
    page = (run / "report" / "index.html").read_text()
    assert "summary.json lists Pareto" not in page  # the search's claim agrees: no warning
    assert sorted(p.name for p in (run / "report").glob("*.png")) == [
        "hypervolume.png",
        "pareto_accuracy_vs_params.png",
    ]


def test_pareto_front_hand_checked_three_objectives_and_wrong_claim_warned(tmp_path: Path) -> None:
    # The claim [5] is what a search that ignored "maximize" would report: the page must say so.
    objectives = [OBJ_ACC, OBJ_PARAMS, OBJ_LAT]
    run = make_run(tmp_path / "three", _hand_trials(), objectives, pareto=[5], extras=False)
    write_report(run)
    assert _pareto_numbers(run) == [0, 1, 2, 4, 5]
    page = (run / "report" / "index.html").read_text()
    assert "summary.json lists Pareto trials [5], but recomputing" in page


def test_trials_csv_input(tmp_path: Path) -> None:
    run = make_run(tmp_path / "csvrun", _hand_trials(), [OBJ_PARAMS, OBJ_ACC], extras=False)
    records = json.loads((run / "search" / "trials.json").read_text())
    (run / "search" / "trials.json").unlink()
    with (run / "search" / "trials.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", "feasible", "architecture", "params", "accuracy", "latency_ms"])
        for r in records:
            m = r["metrics"]
            writer.writerow(
                [
                    r["number"],
                    r["state"],
                    r["feasible"],
                    json.dumps(r["architecture"]),
                    m["params"],
                    m["accuracy"],
                    m["latency_ms"],
                ]
            )
    write_report(run)
    assert _pareto_numbers(run) == [0, 1, 4, 5]


def test_html_escapes_malicious_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("elastic_lm.report.plotly_available", lambda: False)  # a page with no scripts
    run = make_run(tmp_path / "evil", _synthetic_trials(12), [OBJ_LOSS, OBJ_PARAMS])
    evil = "<script>alert('x')</script>&"
    (run / "search" / "baselines.json").write_text(json.dumps([{"name": evil, "metrics": {"val_loss": 5.0}}]))
    (run / "export" / "index.json").write_text(json.dumps([{"name": "m", "path": "<img src=x onerror=y>"}]))
    page = write_report(run).read_text()
    assert "<script" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;" in page


def test_missing_run_dir_and_trials_file_are_one_line_user_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"run directory .*nope does not exist; 'elastic-lm run CONFIG'"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DataError, match=r"search/trials.json \(or trials.csv\) is missing; 'elastic-lm search"
    ):
        write_report(tmp_path / "empty")


def test_bad_direction_names_the_field(tmp_path: Path) -> None:
    bad = {"name": "accuracy", "direction": "maximise"}
    run = make_run(tmp_path / "bad", _hand_trials(), [OBJ_PARAMS, bad], extras=False)
    with pytest.raises(
        DataError, match="objective 'accuracy' has bad direction 'maximise'; use 'minimize' or"
    ):
        write_report(run)


def test_cli_report_writes_index_and_reports_errors_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "cli", _synthetic_trials(10), [OBJ_LOSS, OBJ_PARAMS], extras=False)
    other = make_run(tmp_path / "other", _synthetic_trials(10), [OBJ_LOSS, OBJ_PARAMS], extras=False)
    assert main(["report", str(run), "--compare", str(other), "--open-browser", "no"]) == 0
    assert str(run / "report" / "index.html") in capsys.readouterr().out
    page = (run / "report" / "index.html").read_text()
    # one pair of objectives + the hypervolume of both runs (+ the search history, when interactive)
    figures = set(re.findall(r"<figure id='fig-([a-z_]+)'", page)) - {"history"}
    assert figures == {"pareto_val_loss_vs_params", "hypervolume"}
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("elastic-lm report: error: run directory")


def test_cli_report_resolves_a_recipe_budget_and_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quick = make_run(tmp_path / "runs" / "quick", _synthetic_trials(6), [OBJ_LOSS, OBJ_PARAMS], extras=False)
    other = make_run(tmp_path / "runs" / "other", _synthetic_trials(6), [OBJ_LOSS, OBJ_PARAMS], extras=False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"run_dir: {tmp_path / 'runs' / 'full'}\nbudgets:\n  quick:\n    run_dir: {quick}\n")
    assert main(["report", str(recipe), "--budget", "quick", "--print-config"]) == 0
    assert f"run_dir: {quick}\n" in capsys.readouterr().out
    assert not (quick / "report").exists()
    assert main(["report", str(recipe), "--budget", "quick"]) == 0
    assert (quick / "report" / "index.html").is_file()
    assert main(["report", str(recipe), "--set", f"run_dir={other}"]) == 0
    assert (other / "report" / "index.html").is_file()
    assert not (tmp_path / "runs" / "full").exists()
    assert main(["report", str(quick), "--set", "seed=1"]) == 2  # no config.yaml to apply it to
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--set / --budget have nothing to apply to; pass a run directory that a command "
                            "wrote, a YAML config or a recipe name")  # fmt: skip


def test_latency_table_and_run_config_are_on_the_page(report3: Path, tmp_path: Path) -> None:
    page = (report3 / "report" / "index.html").read_text()
    # make_run: t{i} predicted 1 + i ms, measured 1.1 + 1.05 i ms; t0 is 9.1% optimistic
    assert (
        "<tr><td>t0</td><td class='num'>1.000</td><td class='num'>1.100</td><td class='num'>-9.1%</td>"
        in page
    )
    assert (
        "<tr><td>t7</td><td class='num'>8.000</td><td class='num'>8.450</td><td class='num'>-5.3%</td>"
        in page
    )
    errors = [abs((1 + i) - (1.1 + 1.05 * i)) / (1.1 + 1.05 * i) for i in range(8)]
    assert f"mean absolute percentage error {100 * sum(errors) / 8:.1f}%" in page
    assert "id='run-config'" not in page  # this run has no config.yaml
    run = make_run(tmp_path / "cfg", _synthetic_trials(6), [OBJ_LOSS, OBJ_PARAMS], extras=False)
    (run / "config.yaml").write_text("seed: 3\nrun_dir: <script>x</script>\n")
    html = write_report(run).read_text()
    assert "<pre>seed: 3\nrun_dir: &lt;script&gt;x&lt;/script&gt;\n</pre>" in html
    assert "Latency: predicted and measured" not in html  # no latency_check.json


def test_training_curve_reads_the_training_loops_long_format(tmp_path: Path) -> None:
    from elastic_lm.report.inputs import load_train_curve

    metrics = tmp_path / "metrics.csv"
    metrics.write_text(
        "step,split,name,value\n1,train,loss,9.5\n1,train,lr,0.001\n2,train,loss,8.0\n"
        "2,val,largest,7.5\n2,train,lr,0.002\n"
    )
    curve = load_train_curve(metrics)
    assert curve["step"] == [1.0, 2.0]
    assert curve["loss"] == [9.5, 8.0]
    assert curve["lr"] == [0.001, 0.002]
    assert curve["val/largest"][1] == 7.5


def test_exported_models_link_to_their_folder_and_card_and_say_how_they_load(tmp_path: Path) -> None:
    run = make_run(tmp_path / "links", _synthetic_trials(12), [OBJ_LOSS, OBJ_PARAMS])
    index = [
        {"name": "a", "path": "export/a", "format": "stock", "metrics": {"val_loss": 5.0}},
        {"name": "b", "path": "export/b", "format": "elastic-lm", "metrics": {"val_loss": 4.0}},
    ]
    (run / "export").mkdir(exist_ok=True)
    (run / "export" / "index.json").write_text(json.dumps(index))
    page = write_report(run).read_text()
    assert "<a href='../export/a/'>export/a</a> (<a href='../export/a/README.md'>card</a>)" in page
    assert "<td>stock transformers class</td>" in page
    assert "<td>elastic-lm class</td>" in page


def test_cli_report_json_names_the_written_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "j", _synthetic_trials(10), [OBJ_LOSS, OBJ_PARAMS], extras=False)
    assert main(["report", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "report": str(run / "report" / "index.html"),
        "pareto_csv": str(run / "report" / "pareto.csv"),
    }
    assert Path(out["report"]).is_file()


def test_chance_level_downstream_scores_are_flagged(tmp_path: Path) -> None:
    """Binary task, 400 test examples: chance 0.5, +2 s.e. = 0.55; 0.54 is flagged, 0.70 is not."""
    run = make_run(tmp_path / "chance", _synthetic_trials(10), [OBJ_LOSS, OBJ_PARAMS], extras=False)
    score = {"f1_average": "binary", "num_labels": 2, "test_examples": 400}
    encoders = [
        {"name": "weak", "params": 1e6, "tasks": {"sst": {**score, "accuracy": 0.54, "f1": 0.5}}},
        {"name": "good", "params": 2e6, "tasks": {"sst": {**score, "accuracy": 0.70, "f1": 0.7}}},
        {"name": "mute", "params": 3e6, "tasks": {"sst": {**score, "accuracy": 0.80, "f1": 0.0}}},
    ]
    for row in encoders:
        row["average"] = {"accuracy": row["tasks"]["sst"]["accuracy"], "f1": row["tasks"]["sst"]["f1"]}
    (run / "evaluate").mkdir()
    (run / "evaluate" / "downstream.json").write_text(
        json.dumps({"tasks": ["sst"], "settings": {}, "encoders": encoders, "decoders": []})
    )
    page = write_report(run).read_text()
    assert "weak on sst: accuracy 0.540 is at chance level (1/2 = 0.500, +2 s.e. = 0.550 over 400" in page
    assert "good on sst" not in page
    assert "mute on sst: F1 is 0, the model never predicts the scored class." in page
