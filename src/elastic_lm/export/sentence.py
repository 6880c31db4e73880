"""Exported encoders as sentence-embedding models that load with the ``sentence-transformers`` library.

Why: when the source is a sentence-embedding model (all-MiniLM-L6-v2), what a user deploys is not the
bare ``BertModel`` but "encoder + pooling + normalisation". This writes that as a sentence-transformers
folder (``modules.json``, ``1_Pooling/config.json``, ``sentence_bert_config.json`` and the encoder
without any task head), with the pooling and normalisation the source had, so
``SentenceTransformer(folder)`` gives the embeddings the evaluation scored. The files are written
here, in the source's own format; ``sentence-transformers`` is needed only to load the result.

A stock-shaped member (``BertModel``) loads with sentence-transformers alone; an elastic-lm-shaped one
needs ``import elastic_lm.model`` first (it registers the class with the Auto API), which the card says.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from elastic_lm.evaluate.embedding import PoolingSpec, load_encoder, read_pooling_spec
from elastic_lm.io import atomic_directory, atomic_write_text

if TYPE_CHECKING:
    from transformers import PreTrainedModel

SUFFIX = "-st"
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
)
DEFAULT_MAX_SEQ_LENGTH = 256


def sentence_spec_of(source: str | None) -> PoolingSpec | None:
    """The pooling of ``source`` (asset name or folder) when it is a sentence-transformers model."""
    if not source or source == "scratch":
        return None
    from elastic_lm.errors import ConfigError
    from elastic_lm.train.build import model_folder

    try:
        folder = model_folder(source)
    except ConfigError:
        return None
    return read_pooling_spec(folder)


def sentence_folder_for(model_dir: str | Path) -> Path:
    """Where the sentence-transformers folder of an exported model goes: beside it, ``<name>-st``."""
    model_dir = Path(model_dir)
    return model_dir.with_name(model_dir.name + SUFFIX)


def _pooling_config(spec: PoolingSpec, dim: int) -> dict[str, Any]:
    return {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": spec.mode == "cls",
        "pooling_mode_mean_tokens": spec.mode == "mean",
        "pooling_mode_max_tokens": spec.mode == "max",
        "pooling_mode_mean_sqrt_len_tokens": spec.mode == "mean_sqrt_len",
    }


def _modules(normalize: bool) -> list[dict[str, Any]]:
    kinds = [("", "Transformer"), ("1_Pooling", "Pooling")]
    if normalize:
        kinds.append(("2_Normalize", "Normalize"))
    return [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(kinds)
    ]


def export_sentence_transformer(
    model_dir: str | Path, spec: PoolingSpec, out_dir: str | Path | None = None
) -> Path:
    """Write ``model_dir``'s encoder (any task head dropped) + ``spec`` as a sentence-transformers folder.

    ``model_dir`` is an exported model folder with its tokenizer; ``out_dir`` defaults to
    :func:`sentence_folder_for`. The folder is staged and renamed into place, so a failure leaves no
    half-written model. Returns ``out_dir``.
    """
    model_dir = Path(model_dir)
    out = Path(out_dir) if out_dir is not None else sentence_folder_for(model_dir)
    encoder = cast("PreTrainedModel", load_encoder(model_dir))
    dim = int(encoder.config.hidden_size)
    stock = getattr(encoder.config, "model_type", "") != "elastic-lm"
    tokenizer_files = [model_dir / n for n in _TOKENIZER_FILES if (model_dir / n).is_file()]
    if not tokenizer_files:
        from elastic_lm.errors import DataError

        raise DataError(f"{model_dir} has no tokenizer files; export with a tokenizer first")
    with atomic_directory(out) as staging:
        encoder.save_pretrained(staging)
        for file in tokenizer_files:
            shutil.copy2(file, staging / file.name)
        (staging / "1_Pooling").mkdir()
        atomic_write_text(staging / "1_Pooling" / "config.json", _dump(_pooling_config(spec, dim)))
        if spec.normalize:
            (staging / "2_Normalize").mkdir()
        atomic_write_text(staging / "modules.json", _dump(_modules(spec.normalize)))
        max_len = spec.max_seq_length or DEFAULT_MAX_SEQ_LENGTH
        bert = {"max_seq_length": max_len, "do_lower_case": False}
        atomic_write_text(staging / "sentence_bert_config.json", _dump(bert))
        atomic_write_text(staging / "README.md", _card(model_dir, spec, dim, stock))
    return out


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2) + "\n"


def _card(model_dir: Path, spec: PoolingSpec, dim: int, stock: bool) -> str:
    load = (
        "from sentence_transformers import SentenceTransformer\n"
        if stock
        else "import elastic_lm.model  # registers elastic-lm's encoder class\n"
        "from sentence_transformers import SentenceTransformer\n"
    )
    norm = ", then L2 normalisation" if spec.normalize else ""
    return (
        f"# {model_dir.name} as a sentence-embedding model\n\n"
        f"The encoder of `{model_dir.name}` (exported by elastic-lm) with {spec.mode} pooling{norm}, as "
        f"its source defined it ({spec.origin}); {dim}-dimensional embeddings.\n\n"
        "```python\n"
        f"{load}"
        "model = SentenceTransformer(PATH_TO_THIS_FOLDER)\n"
        'embeddings = model.encode(["first sentence", "second sentence"])\n'
        "```\n\n"
        "Model card, architecture and provenance: see the exported folder beside this one.\n"
    )


__all__ = [
    "DEFAULT_MAX_SEQ_LENGTH",
    "SUFFIX",
    "export_sentence_transformer",
    "sentence_folder_for",
    "sentence_spec_of",
]
