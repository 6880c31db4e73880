"""Representation distillation for encoders: what a sentence-embedding teacher can teach.

A teacher such as all-MiniLM-L6-v2 ships without a masked-LM head, so its *logits* mean nothing; its
token states, self-attention and pooled sentence embedding are what users deploy. These losses
compare exactly those, so the student never has to learn a vocabulary-sized output layer:

* ``minilm-relation`` (MiniLM-v2, Wang et al. 2021): the query-query, key-key and value-value
  self-attention relations of the last attention sub-layer that ran, split into ``relation_heads``
  relation heads, matched by KL divergence. Relations are T x T, so student and teacher may differ
  in width and head count.
* ``last-hidden``: the last hidden state token by token (normalised MSE or ``1 - cos``), the
  states mean pooling averages.
* ``embedding``: the mean-pooled, L2-normalised sentence embedding of the last hidden state, by
  cosine (``1 - cos``) or MSE. Where the student is narrower, the teacher's first channels are
  used (what elastic slicing keeps).

``minilm-relation`` reads the query/key/value projections through forward hooks, so it needs the
modules: ``CombinedLoss.attach(model, teacher)`` (the training loop calls it) registers them.
These classes register themselves in :data:`elastic_lm.train.losses.LOSSES` on import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from elastic_lm.errors import ConfigError, DataError
from elastic_lm.train.losses import LOSSES, Loss


def _last_state(outputs: Any, what: str) -> Tensor:
    """The last hidden state that exists (a dropped final layer leaves None in ``hidden_states``)."""
    states = getattr(outputs, "hidden_states", None)
    if states:
        for s in reversed(states):
            if s is not None:
                return s
    last = getattr(outputs, "last_hidden_state", None)
    if last is None:
        raise DataError(
            f"{what} outputs have no hidden_states; call the model with output_hidden_states=True"
        )
    return last


def mean_pooled(hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """Mean over real tokens, then L2-normalised: the sentence embedding of sentence-transformers."""
    if attention_mask is None:
        pooled = hidden.float().mean(1)
    else:
        m = attention_mask.to(hidden.device, torch.float32).unsqueeze(-1)
        pooled = (hidden.float() * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return F.normalize(pooled, dim=-1)


def sentence_embeddings(model: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
    """The pooled, normalised embedding of an elastic model (its encoder only: no vocabulary head)
    or of any model that returns ``hidden_states``."""
    encoder = getattr(model, "backbone", None)
    if encoder is not None:
        hidden = encoder(**inputs).last_hidden_state
    else:
        hidden = _last_state(model(**inputs, output_hidden_states=True), "model")
    return mean_pooled(hidden, inputs.get("attention_mask"))


def unmasked_inputs(batch: Mapping[str, Any], device: torch.device | str) -> dict[str, Tensor]:
    """Model inputs with MLM-masked tokens put back: embeddings are compared on plain text."""
    keys = ("input_ids", "attention_mask", "token_type_ids")
    inputs = {k: batch[k].to(device) for k in keys if k in batch}
    labels = batch.get("labels")
    if labels is not None and labels.shape == inputs["input_ids"].shape:
        labels = labels.to(device)
        inputs["input_ids"] = inputs["input_ids"].where(labels == -100, labels)
    return inputs


class EmbeddingDistillation(Loss):
    """Pooled sentence-embedding distillation: ``1 - cos`` (default) or MSE of normalised vectors."""

    name = "embedding"
    reads_hidden_states = True
    logits_at_labels_only = True
    needs_teacher = True
    default_when = ("teacher", "largest")

    def __init__(self, metric: str = "cosine") -> None:
        super().__init__()
        if metric not in ("cosine", "mse"):
            raise ConfigError(f"loss embedding: metric={metric!r} is unknown; use 'cosine' or 'mse'")
        self.metric = metric

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        s = _last_state(student, "student")
        t = _last_state(teacher, "teacher").detach()
        if s.shape[-1] > t.shape[-1]:
            raise ConfigError(
                f"loss embedding: student width {s.shape[-1]} exceeds the teacher's {t.shape[-1]}"
            )
        mask = batch.get("attention_mask")
        es = mean_pooled(s, mask)
        et = mean_pooled(t[..., : s.shape[-1]], mask)
        if self.metric == "cosine":
            return (1.0 - (es * et).sum(-1)).mean()
        return (es - et).pow(2).sum(-1).mean()


class LastHiddenDistillation(Loss):
    """Token-level distillation of the last hidden state (what mean pooling averages).

    ``mse`` divides the squared error by the teacher's mean squared token norm, so the loss is about 1
    for an unrelated student whatever the model's scale; ``cosine`` is ``1 - cos`` per token. Both
    are averaged over real tokens. Stronger than the pooled ``embedding`` loss alone: every token
    gives a target, not one vector per sentence.
    """

    name = "last-hidden"
    reads_hidden_states = True
    logits_at_labels_only = True
    needs_teacher = True
    default_when = ("teacher", "largest")

    def __init__(self, metric: str = "mse") -> None:
        super().__init__()
        if metric not in ("cosine", "mse"):
            raise ConfigError(f"loss last-hidden: metric={metric!r} is unknown; use 'cosine' or 'mse'")
        self.metric = metric

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        s = _last_state(student, "student").float()
        t = _last_state(teacher, "teacher").detach().float()
        if s.shape[-1] > t.shape[-1]:
            raise ConfigError(
                f"loss last-hidden: student width {s.shape[-1]} exceeds the teacher's {t.shape[-1]}"
            )
        t = t[..., : s.shape[-1]]
        mask = batch.get("attention_mask")
        m = torch.ones(s.shape[:2], device=s.device) if mask is None else mask.to(s.device, torch.float32)
        if self.metric == "cosine":
            per_token = 1.0 - F.cosine_similarity(s, t, dim=-1)
        else:
            scale = ((t.pow(2).sum(-1) * m).sum() / m.sum().clamp_min(1.0)).clamp_min(1e-12)
            per_token = (s - t).pow(2).sum(-1) / scale
        return (per_token * m).sum() / m.sum().clamp_min(1.0)


class _QKVRecorder:
    """Keeps the query/key/value projections of the last attention sub-layer of a full forward.

    Hooks on every attention's ``q``/``k``/``v`` write to a scratch slot; a hook on the model itself
    publishes the slot when its forward ends, so layers run one by one (block-wise distillation)
    do not overwrite what the last full forward saw.
    """

    def __init__(self, module: nn.Module, what: str) -> None:
        from elastic_lm.model.attention import ElasticAttention

        self.values: dict[str, Tensor] = {}
        self._scratch: dict[str, Tensor] = {}
        self.handles: list[Any] = []
        attentions = [m for m in module.modules() if isinstance(m, ElasticAttention)]
        if not attentions:
            raise ConfigError(
                f"loss minilm-relation needs an elastic model with attention as the {what}, "
                f"not {type(module).__name__}"
            )
        for att in attentions:
            for key in ("q", "k", "v"):
                self.handles.append(getattr(att, key).register_forward_hook(self._hook(key)))
        self.handles.append(module.register_forward_hook(self._publish))

    def _hook(self, key: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            self._scratch[key] = output

        return hook

    def _publish(self, *_args: Any) -> None:
        self.values, self._scratch = dict(self._scratch), {}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def attention_relations(x: Tensor, mask: Tensor | None, n_heads: int) -> Tensor:
    """Log of softmax(x_r x_r^T / sqrt(d_r)) for each of ``n_heads`` channel splits: [B, R, T, T].

    Channels are split with ``tensor_split``, so any width of at least ``n_heads`` works.
    """
    if x.shape[-1] < n_heads:
        raise ConfigError(
            f"loss minilm-relation: width {x.shape[-1]} is below relation_heads={n_heads}; lower it"
        )
    parts = torch.tensor_split(x.float(), n_heads, dim=-1)
    logits = torch.stack([p @ p.transpose(1, 2) / p.shape[-1] ** 0.5 for p in parts], 1)
    if mask is not None:
        keys = mask.to(logits.device, torch.bool)[:, None, None, :]
        logits = logits.masked_fill(~keys, -1e9)  # finite: masked keys get exactly 0 weight
    return F.log_softmax(logits, dim=-1)


class MiniLMRelationDistillation(Loss):
    """MiniLM-v2 self-attention relation distillation over the last attention sub-layer.

    For each of query, key and value (``relations``), KL(teacher relation || student relation) per
    query token, averaged over relation heads and real tokens, then over the relations.
    """

    name = "minilm-relation"
    logits_at_labels_only = True
    needs_teacher = True
    default_when = ("teacher",)

    def __init__(
        self, relation_heads: int = 12, relations: tuple[str, ...] | list[str] = ("q", "k", "v")
    ) -> None:
        super().__init__()
        bad = sorted(set(relations) - {"q", "k", "v"})
        if bad or not relations:
            raise ConfigError(f"loss minilm-relation: relations={list(relations)}; use a subset of q, k, v")
        if relation_heads < 1:
            raise ConfigError(f"loss minilm-relation: relation_heads={relation_heads} must be >= 1")
        self.relation_heads = int(relation_heads)
        self.relations = tuple(relations)
        self._recorders: dict[str, _QKVRecorder] = {}

    def attach(self, model: nn.Module, teacher: nn.Module | None) -> None:
        """Hook the student and the teacher (again after the model was rebuilt)."""
        for rec in self._recorders.values():
            rec.remove()
        self._recorders = {"student": _QKVRecorder(model, "student")}
        if teacher is not None:
            self._recorders["teacher"] = _QKVRecorder(teacher, "teacher")

    def detach(self) -> None:
        """Remove the hooks (training ended): they hold the last forward's graph tensors."""
        for rec in self._recorders.values():
            rec.remove()
        self._recorders = {}

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        if "teacher" not in self._recorders:
            raise ConfigError(
                "loss minilm-relation reads the models' attention projections; call "
                "CombinedLoss.attach(model, teacher) first (train_supernet does)"
            )
        s_vals, t_vals = self._recorders["student"].values, self._recorders["teacher"].values
        if not s_vals or not t_vals:
            raise DataError(
                "loss minilm-relation: no attention ran in the last forward of student or teacher"
            )
        mask = batch.get("attention_mask")
        losses = []
        for key in self.relations:
            log_s = attention_relations(s_vals[key], mask, self.relation_heads)
            log_t = attention_relations(t_vals[key].detach(), mask, self.relation_heads)
            kl = (log_t.exp() * (log_t - log_s)).sum(-1).mean(1)  # [B, T] per query token
            if mask is None:
                losses.append(kl.mean())
            else:
                m = mask.to(kl.device, torch.float32)
                losses.append((kl * m).sum() / m.sum().clamp_min(1.0))
        return torch.stack(losses).mean()


def set_dropout(model: nn.Module, p: float) -> None:
    """Set every dropout of ``model`` (and its config, so checkpoints and exports agree) to ``p``.

    Why: with dropout on, an inherited student is a noisy copy of its teacher, and distilling that
    noise away moves the weights of the largest member away from the teacher it already equals.
    """
    from elastic_lm.model.attention import ElasticAttention

    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        elif isinstance(module, ElasticAttention):
            module.dropout = p
    cfg = getattr(model, "config", None)
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if cfg is not None and hasattr(cfg, key):
            setattr(cfg, key, p)


REPRESENTATION_LOSSES = (EmbeddingDistillation, LastHiddenDistillation, MiniLMRelationDistillation)
LOSSES.update({cls.name: cls for cls in REPRESENTATION_LOSSES})

__all__ = [
    "REPRESENTATION_LOSSES",
    "EmbeddingDistillation",
    "LastHiddenDistillation",
    "MiniLMRelationDistillation",
    "attention_relations",
    "mean_pooled",
    "sentence_embeddings",
    "set_dropout",
    "unmasked_inputs",
]
