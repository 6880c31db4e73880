"""The config schema and its loading: defaults, overrides, and one-line errors for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from elastic_lm.config import Config, apply_overrides, load_config
from elastic_lm.errors import ConfigError


def test_defaults_validate_without_a_file() -> None:
    config = load_config(None)
    assert isinstance(config, Config)
    assert config.train.steps == 200
    assert config.model.task == "masked-lm"


def test_yaml_file_and_overrides_combine(tmp_path: Path) -> None:
    file = tmp_path / "job.yaml"
    file.write_text("seed: 7\ntrain:\n  steps: 30\n  learning_rate: 0.001\n")
    config = load_config(file, ["train.steps=12", "data.source=[austen, my/texts]"])
    assert config.seed == 7
    assert config.train.steps == 12  # the override wins over the file
    assert config.train.learning_rate == pytest.approx(0.001)
    assert config.data.source == ["austen", "my/texts"]


def test_override_parses_yaml_scalars() -> None:
    data = apply_overrides({}, ["a.b=3", "a.c=true", "a.d=0.5", "a.e=text"])
    assert data == {"a": {"b": 3, "c": True, "d": 0.5, "e": "text"}}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.steps=abc"], "'train.steps' has bad value 'abc'"),
        (["train.stepz=1"], "'train.stepz' is not a known key; allowed keys here: batch_size"),
        (["model.task=translation"], "'model.task' has bad value 'translation'"),
        (["nonsense=1"], "'nonsense' is not a known key"),
        (["train.steps=-1"], "'train.steps' has bad value -1"),
        (["train.steps"], "must look like section.key=value"),
        (["search.uniform_shares=[50]"], "'search.uniform_shares.0' has bad value 50"),  # 0.5, not 50
        (["export.budget_marks=[0]"], "'export.budget_marks.0' has bad value 0"),
    ],
)
def test_bad_values_name_the_field(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_override_cannot_descend_into_a_value() -> None:
    with pytest.raises(ConfigError, match="'seed' is a value, not a section"):
        apply_overrides({"seed": 1}, ["seed.x=1"])


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(scalar)


def test_named_budget_merges_over_the_file(tmp_path: Path) -> None:
    file = tmp_path / "recipe.yaml"
    file.write_text(
        "train:\n  steps: 1000\n  batch_size: 32\n"
        "budgets:\n  quick:\n    train:\n      steps: 20\n  full:\n    train:\n      steps: 5000\n"
    )
    quick = load_config(file, budget="quick")
    assert (quick.train.steps, quick.train.batch_size, quick.budget) == (20, 32, "quick")
    assert load_config(file).train.steps == 1000  # no budget: the file as written
    assert load_config(file, ["train.steps=7"], budget="full").train.steps == 7  # --set wins
    with pytest.raises(
        ConfigError, match="budget 'tiny' is not defined in the config; defined budgets: full, quick"
    ):
        load_config(file, budget="tiny")


def test_a_config_argument_names_a_file_a_recipe_or_a_repository_configs_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from elastic_lm.config.recipes import recipe_names, recipe_path, resolve_config_path

    root = Path(__file__).resolve().parents[1]
    assert recipe_names() == sorted(p.stem for p in (root / "configs").glob("*.yaml"))
    assert recipe_path("elm-mlm").read_text() == (root / "configs" / "elm-mlm.yaml").read_text()
    monkeypatch.chdir(tmp_path)  # outside the clone: configs/elm-mlm.yaml does not exist here
    assert resolve_config_path("elm-mlm") == recipe_path("elm-mlm")
    assert resolve_config_path("configs/elm-mlm.yaml") == recipe_path("elm-mlm")
    assert (
        load_config("elm-mlm", budget="quick").run_dir
        == load_config(root / "configs" / "elm-mlm.yaml", budget="quick").run_dir
    )
    own = tmp_path / "configs" / "elm-mlm.yaml"  # a user's own file of the same name wins
    own.parent.mkdir()
    own.write_text("run_dir: mine\n")
    assert load_config("configs/elm-mlm.yaml").run_dir == Path("mine")
    with pytest.raises(ConfigError, match=r"no recipe named 'elm-nope'; shipped recipes: .*elm-mlm"):
        load_config("elm-nope")
    with pytest.raises(ConfigError, match=r"config file 'other/x.yaml' does not exist"):
        load_config("other/x.yaml")
