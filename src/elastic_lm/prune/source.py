"""The model to prune: a Hugging Face encoder (BERT / RoBERTa / MiniLM) as an elastic classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from elastic_lm.errors import ConfigError
from elastic_lm.model import ElasticForSequenceClassification

ENCODER_TYPES: tuple[str, ...] = ("bert", "roberta")


def resolve_source(source: str) -> Path:
    """``model.source`` (asset name or folder) as a folder, refusing anything but an encoder."""
    from elastic_lm.assets.models import model_folder

    folder = model_folder(source)
    config = AutoConfig.from_pretrained(folder)
    if config.model_type not in ENCODER_TYPES or getattr(config, "is_decoder", False):
        kind = "a decoder" if config.model_type not in ENCODER_TYPES else "configured as a decoder"
        raise ConfigError(
            f"model.source={source!r} is {kind} (model_type={config.model_type!r}); 'elastic-lm prune' "
            f"needs an encoder ({', '.join(ENCODER_TYPES)}, e.g. minilm-l6): use a BERT/RoBERTa folder"
        )
    return folder


def is_finetuned(folder: Path, num_labels: int) -> bool:
    """True when the checkpoint already is a sequence classifier with this many outputs."""
    config = AutoConfig.from_pretrained(folder)
    archs = config.architectures or []
    return any(a.endswith("ForSequenceClassification") for a in archs) and config.num_labels == num_labels


def load_classifier(
    folder: Path, num_labels: int, label_names: list[str] | None
) -> ElasticForSequenceClassification:
    """The checkpoint converted at full size with a classification (or regression) head."""
    from elastic_lm.convert import from_hf

    extra: dict[str, Any] = {"num_labels": num_labels}
    if label_names is not None:
        extra["id2label"] = dict(enumerate(label_names))
        extra["label2id"] = {n: i for i, n in enumerate(label_names)}
    if not is_finetuned(folder, num_labels):
        from transformers import AutoModelForSequenceClassification

        hf = AutoModelForSequenceClassification.from_pretrained(folder, **extra)
        model = from_hf(hf, task="sequence-classification")
    else:
        model = from_hf(folder, task="sequence-classification")
    ensure_label_maps(model.config)
    return model  # type: ignore[return-value]


def ensure_label_maps(config: Any) -> None:
    """Give ``id2label`` / ``label2id`` both (the stock exporter copies both)."""
    id2label = dict(getattr(config, "id2label", None) or {})
    if not id2label:
        id2label = {i: f"LABEL_{i}" for i in range(config.num_labels)}
    config.id2label = {int(k): v for k, v in id2label.items()}
    config.label2id = {v: int(k) for k, v in id2label.items()}


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(folder))


__all__ = ["ENCODER_TYPES", "is_finetuned", "load_classifier", "load_tokenizer", "resolve_source"]
