"""Sentence embeddings the way the source model defines them (pooling, normalisation), for any encoder.

Why one place: retrieval, fidelity and the linear probe must embed a text exactly as a user of the
model would, or the numbers describe a different model. A sentence-transformers model says how in its
``modules.json`` and ``1_Pooling/config.json`` (all-MiniLM-L6-v2: mean over the real tokens, then L2
normalisation); a plain encoder without them gets mean pooling + L2 normalisation, the common choice.
The same :class:`TextEmbedder` runs a model folder, a teacher, or a super-network with a sub-network
selected, so the three are compared on equal terms.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from elastic_lm.errors import DataError

PoolingMode = Literal["mean", "cls", "max", "mean_sqrt_len"]
POOLING_MODES: tuple[str, ...] = ("mean", "cls", "max", "mean_sqrt_len")
_ST_TYPES = {
    "transformer": "sentence_transformers.models.Transformer",
    "pooling": "sentence_transformers.models.Pooling",
    "normalize": "sentence_transformers.models.Normalize",
}


@dataclass(frozen=True)
class PoolingSpec:
    """How token states become one sentence vector; ``origin`` says where the rule came from."""

    mode: PoolingMode = "mean"
    normalize: bool = True
    max_seq_length: int | None = None
    origin: str = "default (mean + L2 normalisation)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_pooling_spec(folder: str | Path) -> PoolingSpec | None:
    """The pooling of a sentence-transformers folder (``modules.json``), or None when it is not one.

    Only the module types this project can reproduce exactly are accepted (Transformer, Pooling,
    Normalize); a model with e.g. a Dense projection is refused rather than embedded differently.
    """
    folder = Path(folder)
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    where = f"{modules_file}"
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        kinds = [str(m["type"]).rsplit(".", 1)[-1].lower() for m in modules]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DataError(f"{where} is not a sentence-transformers module list ({error})") from None
    unknown = sorted(set(kinds) - set(_ST_TYPES))
    if unknown or "pooling" not in kinds:
        raise DataError(
            f"{where} has modules {kinds}; only transformer, pooling and normalize can be reproduced "
            "here (set evaluate.embedding.pooling to pool it another way)"
        )
    pooling_dir = next(m.get("path", "") for m in modules if str(m["type"]).lower().endswith("pooling"))
    config = _json(folder / pooling_dir / "config.json")
    mode = _pooling_mode(config, folder / pooling_dir / "config.json")
    bert_file = folder / "sentence_bert_config.json"
    max_len = _json(bert_file).get("max_seq_length") if bert_file.is_file() else None
    return PoolingSpec(
        mode=mode,
        normalize="normalize" in kinds,
        max_seq_length=int(max_len) if max_len else None,
        origin=f"sentence-transformers config of {folder.name}",
    )


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path} is missing; the sentence-transformers folder is incomplete")
    return json.loads(path.read_text(encoding="utf-8"))


def _pooling_mode(config: dict[str, Any], where: Path) -> PoolingMode:
    if isinstance(config.get("pooling_mode"), str):  # newer sentence-transformers write one key
        mode = config["pooling_mode"]
    else:
        keys = {
            m: f"pooling_mode_{m}_token" if m == "cls" else f"pooling_mode_{m}_tokens" for m in POOLING_MODES
        }
        modes = [m for m, key in keys.items() if config.get(key)]
        if len(modes) != 1:
            raise DataError(f"{where}: exactly one pooling mode must be on, found {modes or 'none'}")
        mode = modes[0]
    if mode not in POOLING_MODES:
        raise DataError(f"{where}: pooling mode {mode!r} is not one of {', '.join(POOLING_MODES)}")
    return mode  # type: ignore[return-value]


def pooling_spec_for(folder: str | Path | None) -> PoolingSpec:
    """The folder's own sentence-transformers pooling, else the default (mean + L2 normalisation)."""
    spec = read_pooling_spec(folder) if folder is not None else None
    return spec or PoolingSpec()


def pool(hidden: torch.Tensor, mask: torch.Tensor, spec: PoolingSpec) -> torch.Tensor:
    """[B, T, H] token states and [B, T] mask -> [B, H] sentence vectors (padding never counts)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    if spec.mode == "cls":
        out = hidden[:, 0]
    elif spec.mode == "max":
        out = hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    else:
        summed = (hidden * m).sum(dim=1)
        count = m.sum(dim=1).clamp(min=1e-9)
        out = summed / (count.sqrt() if spec.mode == "mean_sqrt_len" else count)
    return nn.functional.normalize(out, p=2, dim=-1) if spec.normalize else out


Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]


class TextEmbedder:
    """Texts -> sentence embeddings [N, H] (float32, on the CPU), in the order given.

    ``forward`` maps a tokenized batch to the last hidden states; texts are batched by length so
    little padding is computed (padding never changes a real token's state, only the cost).
    """

    def __init__(
        self,
        forward: Forward,
        tokenizer: Any,
        spec: PoolingSpec,
        *,
        max_length: int = 128,
        batch_size: int = 64,
        device: torch.device | str = "cpu",
    ) -> None:
        self.forward = forward
        self.tokenizer = tokenizer
        self.spec = spec
        limit = spec.max_seq_length or max_length
        self.max_length = min(max_length, limit)
        self.batch_size = batch_size
        self.device = torch.device(device)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """One row per text; an empty list gives an empty [0, 0] tensor."""
        if not texts:
            return torch.zeros(0, 0)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rows: list[torch.Tensor] = [torch.empty(0)] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in chunk],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            batch = {k: v.to(self.device) for k, v in batch.items() if k in _INPUTS}
            hidden = self.forward(batch)
            vectors = pool(hidden.float(), batch["attention_mask"], self.spec).cpu()
            for i, vector in zip(chunk, vectors, strict=True):
                rows[i] = vector
        return torch.stack(rows)


_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def backbone_of(model: nn.Module) -> nn.Module:
    """The bare encoder of a task model (elastic-lm's ``backbone``, Hugging Face's ``base_model``)."""
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module):
        return backbone
    base = getattr(model, "base_model", None)
    return base if isinstance(base, nn.Module) else model


def module_forward(model: nn.Module) -> Forward:
    """A :data:`Forward` over a backbone that returns ``last_hidden_state`` (eval mode is set)."""
    backbone = backbone_of(model).eval()

    def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return backbone(**batch).last_hidden_state

    return forward


def subnetwork_forward(supernet: Any, arch: Any) -> Forward:
    """A :data:`Forward` over the super-network with ``arch`` selected for each batch, then restored."""
    supernet.eval()

    def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with supernet.using(arch):
            return supernet.backbone(**batch).last_hidden_state

    return forward


def load_encoder(folder: str | Path) -> nn.Module:
    """The folder's encoder without any task head (stock classes or elastic-lm's own), in eval mode."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    import elastic_lm.model  # noqa: F401  (registers elastic-lm's classes with the Auto API)

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise DataError(f"{folder} has no config.json; it is not a model folder")
    config = AutoConfig.from_pretrained(str(folder))
    kwargs = {"add_pooling_layer": False} if config.model_type in ("bert", "roberta") else {}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a masked-LM folder's head weights are unused here, by design
    try:
        model = AutoModel.from_pretrained(str(folder), **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model.eval()


def position_limit(config: Any) -> int | None:
    """The longest input the model's learned positions allow (RoBERTa-style offsets subtracted)."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None or getattr(config, "positions", "learned") == "rope":
        return None
    offset = getattr(config, "position_offset", None)
    if offset is None:
        offset = (config.pad_token_id or 0) + 1 if config.model_type in ("roberta", "xlm-roberta") else 0
    return int(positions) - int(offset)


def non_embedding_params(model: nn.Module) -> int:
    """Parameters of the encoder outside token/position embeddings and any pooler or head."""
    backbone = backbone_of(model)
    return sum(
        p.numel()
        for name, p in backbone.named_parameters()
        if not name.startswith(("embeddings.", "pooler."))
    )


def folder_embedder(
    folder: str | Path,
    tokenizer: Any,
    spec: PoolingSpec,
    *,
    max_length: int = 128,
    batch_size: int = 64,
    device: str = "cpu",
) -> tuple[TextEmbedder, int]:
    """A :class:`TextEmbedder` over the model in ``folder`` and its non-embedding parameter count."""
    model = load_encoder(folder).to(device)
    limit = position_limit(model.config)
    length = max_length if limit is None else min(max_length, limit)
    embedder = TextEmbedder(
        module_forward(model), tokenizer, spec, max_length=length, batch_size=batch_size, device=device
    )
    return embedder, non_embedding_params(model)


__all__ = [
    "POOLING_MODES",
    "PoolingSpec",
    "TextEmbedder",
    "backbone_of",
    "folder_embedder",
    "load_encoder",
    "module_forward",
    "non_embedding_params",
    "pool",
    "pooling_spec_for",
    "position_limit",
    "read_pooling_spec",
    "subnetwork_forward",
]
