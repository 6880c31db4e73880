"""Training losses: small modules, combined by a weighted spec list.

Every loss is called as ``loss(student, batch, teacher=None) -> scalar``, where ``student`` and
``teacher`` look like a Hugging Face ``ModelOutput`` (``.logits``, ``.hidden_states``,
``.attentions``) and ``batch`` is the mapping fed to the model (``labels``, ``attention_mask``, and
for the cached teacher ``teacher_topk_values`` / ``teacher_topk_indices``). Teacher tensors are
always detached here, so in-place distillation from the largest sub-network cannot leak gradients.

Where student and teacher differ in depth, student layer ``i`` is compared with teacher layer
``m(i)`` (:func:`uniform_layer_map` unless a ``layer_map`` is given); a ``None`` entry in a student
tuple (a dropped layer) is skipped. Where widths differ, learned projections (parameters of the
loss, so hand ``CombinedLoss.parameters()`` to the optimiser) map the student into the teacher's
width; a sub-network narrower than the projection's input uses its first columns, as elastic
slicing keeps the first channels. Without a projection a narrower student is compared with the
teacher's first channels (the in-place case: the teacher is the largest sub-network).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from elastic_lm.errors import ConfigError, DataError

IGNORE_INDEX = -100


def uniform_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """Student layer ``i`` <- teacher layer ``ceil((i + 1) * n_teacher / n_student) - 1``.

    The last student layer always meets the last teacher layer, and a deeper student repeats teacher
    layers instead of running off the end (as in TinyBERT's uniform strategy).
    """
    if n_student < 1 or n_teacher < 1:
        raise ValueError(f"layer counts must be >= 1, got {n_student} and {n_teacher}")
    return [-(-(i + 1) * n_teacher // n_student) - 1 for i in range(n_student)]


def _token_mask(batch: Mapping[str, Any], shape: torch.Size, device: torch.device) -> Tensor:
    """[B, T] float mask of real tokens (all ones when the batch has no ``attention_mask``)."""
    mask = batch.get("attention_mask")
    if mask is None:
        return torch.ones(shape, device=device)
    return mask.to(device=device, dtype=torch.float32)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` [B, T] over positions where ``mask`` [B, T] is 1."""
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


class Loss(nn.Module):
    """Base: ``default_when`` lists the task targets at which a loss applies unless configured."""

    name: ClassVar[str] = "loss"
    needs_teacher: ClassVar[bool] = False
    default_when: ClassVar[tuple[str, ...]] = ("labels", "teacher", "largest")
    # reads token logits at labelled positions only, or none at all (hidden states, attentions)
    logits_at_labels_only: ClassVar[bool] = False
    # extra model outputs the loss reads (the loop asks the forward pass for them)
    reads_hidden_states: ClassVar[bool] = False
    reads_attentions: ClassVar[bool] = False

    @property
    def labelled_positions_only(self) -> bool:
        """True when the loss reads token logits only at labelled (MLM-masked) positions, so the model
        may compute its vocabulary projection there alone (``logits_positions``)."""
        return self.logits_at_labels_only

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        raise NotImplementedError


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean CE over labelled positions; 0 (not NaN) when a batch has none, e.g. nothing masked."""
    logits = logits.reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1).long().to(logits.device)
    summed = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return summed / (labels != IGNORE_INDEX).sum().clamp_min(1)  # no host sync, no NaN


# --- losses on the data labels --------------------------------------------------------------------


class MLMLoss(Loss):
    """Masked-LM cross-entropy over the masked positions (labels -100 elsewhere).

    Logits [N, V] (computed only at the labelled positions, ``logits_positions``) meet the labels
    at those positions, in the same row-major order.
    """

    name = "mlm"
    logits_at_labels_only = True

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        labels = batch["labels"]
        if student.logits.dim() == 2 and labels.dim() == 2:
            labels = labels[labels != IGNORE_INDEX]
        return _cross_entropy(student.logits, labels)


class CLMLoss(Loss):
    """Causal-LM cross-entropy: position t predicts token t+1 (labels unshifted, as in HF)."""

    name = "clm"

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        return _cross_entropy(student.logits[:, :-1], batch["labels"][:, 1:])


class ClassificationLoss(Loss):
    """Sequence classification cross-entropy on ``logits`` [B, C]."""

    name = "classification"

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        return _cross_entropy(student.logits, batch["labels"])


class RegressionLoss(Loss):
    """Mean squared error for regression tasks (STS-B style), ``logits`` [B, 1] or [B]."""

    name = "regression"

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        prediction = student.logits.reshape(-1)
        return F.mse_loss(prediction, batch["labels"].to(prediction.dtype).reshape(-1))


# --- distillation ---------------------------------------------------------------------------------


def _kl_positions(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student) per position, softened by ``temperature``; shape of logits[..., 0]."""
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)


def _position_mask(batch: Mapping[str, Any], logits: Tensor, positions: str) -> Tensor:
    if logits.dim() == 2:  # sequence-level logits [B, C]
        return torch.ones(logits.shape[:1], device=logits.device)
    if positions == "labels":
        return (batch["labels"] != IGNORE_INDEX).float()
    return _token_mask(batch, logits.shape[:2], logits.device)


class LogitDistillation(Loss):
    """Soft-label distillation (Hinton et al. 2015): KL at temperature T, scaled by T^2.

    The T^2 factor keeps gradient magnitudes comparable across temperatures. ``positions`` picks
    the averaged tokens: ``"attention"`` (all real tokens) or ``"labels"`` (MLM-masked ones).
    """

    name = "logit-kd"
    needs_teacher = True
    default_when = ("teacher", "largest")

    def __init__(self, temperature: float = 1.0, positions: str = "attention") -> None:
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"temperature={temperature} must be > 0; use e.g. 1.0 or 2.0")
        if positions not in ("attention", "labels"):
            raise ConfigError(f"positions={positions!r} is unknown; use 'attention' or 'labels'")
        self.temperature = float(temperature)
        self.positions = positions

    @property
    def labelled_positions_only(self) -> bool:
        return self.positions == "labels"

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        t_logits = teacher.logits.detach()
        kl = _kl_positions(student.logits, t_logits, self.temperature)
        mask = _position_mask(batch, student.logits, self.positions)
        return _masked_mean(kl, mask) * self.temperature**2


class TopKLogitDistillation(LogitDistillation):
    """Logit distillation from cached teacher top-k logits (see ``teacher_cache``).

    Approximation: only the teacher's k largest logits are kept, so both distributions are
    renormalised over those k classes: KL(softmax(top-k teacher / T) || softmax(student at the
    same k classes / T)). The tail mass (small for k of 32-128 on a peaked LM) is ignored, and the
    student is not pushed down on classes outside the teacher's top k.
    """

    name = "topk-kd"
    needs_teacher = False
    default_when = ("teacher",)

    @property
    def labelled_positions_only(self) -> bool:
        return False  # the cache holds every position's top k: the student needs full logits

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        if "teacher_topk_values" not in batch:
            raise DataError("batch has no 'teacher_topk_values'; attach the cache with TopKLogitCache.attach")
        values = batch["teacher_topk_values"].to(student.logits.device)
        indices = batch["teacher_topk_indices"].to(student.logits.device).long()
        picked = student.logits.gather(-1, indices)
        kl = _kl_positions(picked, values, self.temperature)
        mask = _position_mask(batch, student.logits, self.positions)
        return _masked_mean(kl, mask) * self.temperature**2


class _LayerProjections(nn.Module):
    """One learned student->teacher width projection per student layer, elastic in its input."""

    def __init__(self, n_layers: int, student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.enabled = student_width != teacher_width
        self.proj = nn.ModuleList(
            [nn.Linear(student_width, teacher_width) for _ in range(n_layers if self.enabled else 0)]
        )

    def pair(self, index: int, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        """Bring one student/teacher feature pair to a common width."""
        if self.enabled:
            if index >= len(self.proj):
                raise ConfigError(
                    f"student has layer {index} but n_student_layers={len(self.proj)}; "
                    "set n_student_layers to the super-network's layer count"
                )
            layer = self.proj[index]
            width = student.shape[-1]
            return F.linear(student, layer.weight[:, :width], layer.bias), teacher
        if student.shape[-1] > teacher.shape[-1]:
            raise ConfigError(
                f"student width {student.shape[-1]} exceeds teacher width {teacher.shape[-1]}; "
                "set student_width and teacher_width so a projection is learned"
            )
        return student, teacher[..., : student.shape[-1]]


def _mapped_pairs(
    student_states: Sequence[Tensor | None] | None,
    teacher_states: Sequence[Tensor | None] | None,
    layer_map: Sequence[int] | None,
    what: str,
) -> list[tuple[int, Tensor, Tensor]]:
    """(student index, student tensor, detached teacher tensor) for every compared layer."""
    if not student_states or not teacher_states:
        raise DataError(f"model outputs have no {what}; call the model with output_{what}=True")
    mapping = list(layer_map) if layer_map is not None else None
    if mapping is None:
        mapping = uniform_layer_map(len(student_states), len(teacher_states))
    if len(mapping) < len(student_states):
        raise ConfigError(
            f"layer_map has {len(mapping)} entries for {len(student_states)} student layers; "
            "give one teacher layer per student layer"
        )
    pairs = []
    for i, s in enumerate(student_states):
        t = teacher_states[mapping[i]]
        if s is not None and t is not None:
            pairs.append((i, s, t.detach()))
    if not pairs:
        raise DataError(f"no student/teacher {what} pair to compare (all layers dropped?)")
    return pairs


class HiddenStateDistillation(Loss):
    """MSE between mapped hidden states (TinyBERT-style), through learned projections if needed."""

    name = "hidden"
    reads_hidden_states = True
    logits_at_labels_only = True
    needs_teacher = True
    default_when = ("teacher", "largest")

    def __init__(
        self,
        n_student_layers: int = 1,
        student_width: int = 0,
        teacher_width: int = 0,
        layer_map: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.projections = _LayerProjections(n_student_layers, student_width, teacher_width)
        self.layer_map = layer_map

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        pairs = _mapped_pairs(student.hidden_states, teacher.hidden_states, self.layer_map, "hidden_states")
        losses = []
        for i, s, t in pairs:
            s, t = self.projections.pair(i, s, t)
            mask = _token_mask(batch, s.shape[:2], s.device)
            losses.append(_masked_mean((s - t).pow(2).mean(-1), mask))
        return torch.stack(losses).mean()


class AttentionDistillation(Loss):
    """KL between attention distributions of mapped layers (MiniLM / TinyBERT).

    Heads are compared one to one when counts match, else each side is averaged over its heads.
    """

    name = "attention"
    reads_attentions = True
    logits_at_labels_only = True
    needs_teacher = True
    default_when = ("teacher", "largest")

    def __init__(self, layer_map: Sequence[int] | None = None, eps: float = 1e-12) -> None:
        super().__init__()
        self.layer_map = layer_map
        self.eps = eps

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        pairs = _mapped_pairs(student.attentions, teacher.attentions, self.layer_map, "attentions")
        losses = []
        for _, s, t in pairs:
            if s.shape[1] != t.shape[1]:
                s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
            s, t = s.float().clamp_min(self.eps), t.float().clamp_min(self.eps)
            kl = (t * (t.log() - s.log())).sum(-1).mean(1)  # [B, T]: per query row, heads averaged
            mask = _token_mask(batch, kl.shape, kl.device)
            losses.append(_masked_mean(kl, mask))
        return torch.stack(losses).mean()


def standardise_tokens(x: Tensor, mask: Tensor, eps: float = 1e-6) -> Tensor:
    """Zero mean, unit variance per channel over the valid tokens of each sequence.

    ``x`` [B, T, H], ``mask`` [B, T]; padded positions come out as 0.
    """
    m = mask.unsqueeze(-1).to(x.dtype)
    n = m.sum(1, keepdim=True).clamp_min(1.0)
    mean = (x * m).sum(1, keepdim=True) / n
    centred = (x - mean) * m
    var = centred.pow(2).sum(1, keepdim=True) / n
    return centred / torch.sqrt(var + eps)


class RelationalLoss(Loss):
    """ELM relational loss (Wang 2025): per block, mean over channels of (1 - Pearson r).

    Features are standardised per channel over the valid tokens of a sequence, so only how each
    channel varies across tokens is matched, not its scale or offset: the student may represent
    the teacher's structure with any per-channel affine code. A learned projection is used where
    widths differ.
    """

    name = "relational"
    reads_hidden_states = True
    logits_at_labels_only = True
    needs_teacher = True
    default_when = ("teacher", "largest")

    def __init__(
        self,
        n_student_layers: int = 1,
        student_width: int = 0,
        teacher_width: int = 0,
        layer_map: Sequence[int] | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.projections = _LayerProjections(n_student_layers, student_width, teacher_width)
        self.layer_map = layer_map
        self.eps = eps

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        pairs = _mapped_pairs(student.hidden_states, teacher.hidden_states, self.layer_map, "hidden_states")
        losses = []
        for i, s, t in pairs:
            s, t = self.projections.pair(i, s.float(), t.float())
            mask = _token_mask(batch, s.shape[:2], s.device)
            zs = standardise_tokens(s, mask, self.eps)
            zt = standardise_tokens(t, mask, self.eps)
            n = mask.sum(1).clamp_min(1.0).unsqueeze(-1)  # [B, 1]
            r = (zs * zt).sum(1) / n  # [B, H] Pearson r per sequence and channel
            losses.append((1.0 - r).mean())
        return torch.stack(losses).mean()


def blockwise_loss(
    student_layer: Callable[[int, Tensor, Tensor | None], Tensor],
    teacher_hidden: Sequence[Tensor],
    mask: Tensor | None = None,
    n_student_blocks: int | None = None,
    layer_map: Sequence[int] | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """NAS-BERT block-wise distillation (Xu et al. 2021): every block trains on its own.

    ``teacher_hidden`` holds the teacher's embedding output followed by each teacher block's
    output (HF ``hidden_states`` convention, length L+1). Student block ``i`` receives the
    detached teacher state at ``m(i-1)`` and regresses (MSE over valid tokens) the teacher state
    after block ``m(i)``, so no gradient crosses from one block into another and blocks can train
    in parallel. A student block narrower than the teacher is compared with the teacher's first
    channels (what elastic slicing keeps). Returns the mean over blocks and the per-block losses.
    """
    n_teacher = len(teacher_hidden) - 1
    if n_teacher < 1:
        raise DataError("teacher_hidden needs the embedding output plus at least one block output")
    n_student = n_teacher if n_student_blocks is None else n_student_blocks
    if n_student == 0:  # every layer dropped: nothing to regress
        zero = teacher_hidden[0].new_zeros(())
        return zero, []
    mapping = list(layer_map) if layer_map is not None else uniform_layer_map(n_student, n_teacher)
    parts = []
    previous = -1
    for i in range(n_student):
        inputs = teacher_hidden[previous + 1].detach()
        target = teacher_hidden[mapping[i] + 1].detach()
        previous = mapping[i]
        output = student_layer(i, inputs, mask)
        if output.shape[-1] > target.shape[-1]:
            raise ConfigError(
                f"student block {i} is {output.shape[-1]} wide but the teacher only "
                f"{target.shape[-1]}; block-wise distillation needs a teacher at least as wide"
            )
        target = target[..., : output.shape[-1]]
        token_mask = mask.float() if mask is not None else torch.ones(output.shape[:2], device=output.device)
        parts.append(_masked_mean((output - target).pow(2).mean(-1), token_mask))
    return torch.stack(parts).mean(), parts


class BlockwiseDistillation(Loss):
    """NAS-BERT block-wise distillation as a loss spec (``{name: blockwise}``).

    It runs the student's layers itself (``model.backbone.forward_layer``) on the teacher's hidden
    states, so the training loop calls :meth:`layerwise` instead of ``forward``. The selected
    sub-network's non-identity layers are mapped onto the teacher's layers (uniform map, or
    ``layer_map`` with one teacher layer per active student layer); see :func:`blockwise_loss`.
    """

    name = "blockwise"
    reads_hidden_states = True
    logits_at_labels_only = True
    needs_teacher = True
    layerwise_loss = True
    default_when = ("teacher",)

    def __init__(self, layer_map: Sequence[int] | None = None) -> None:
        super().__init__()
        self.layer_map = list(layer_map) if layer_map is not None else None

    def forward(self, student: Any, batch: Mapping[str, Any], teacher: Any | None = None) -> Tensor:
        raise ConfigError("loss 'blockwise' runs the model's layers; call CombinedLoss(..., model=model)")

    def layerwise(self, model: nn.Module, batch: Mapping[str, Any], teacher: Any) -> Tensor:
        """Mean over the active student blocks of their block-wise regression losses."""
        backbone = getattr(model, "backbone", model)
        if not hasattr(backbone, "forward_layer"):
            raise ConfigError(
                f"loss 'blockwise' needs a model with forward_layer (an elastic model), not "
                f"{type(model).__name__}"
            )
        states = getattr(teacher, "hidden_states", None)
        if not states:
            raise DataError("teacher outputs have no hidden_states; call it with output_hidden_states=True")
        active = [i for i, layer in enumerate(model.architecture.layers) if layer.block != "identity"]
        mask = batch.get("attention_mask")

        def run(k: int, hidden: Tensor, m: Tensor | None) -> Tensor:
            return backbone.forward_layer(active[k], hidden, m)

        total, _ = blockwise_loss(run, states, mask, n_student_blocks=len(active), layer_map=self.layer_map)
        return total


# --- combination ----------------------------------------------------------------------------------

LOSSES: dict[str, type[Loss]] = {
    cls.name: cls
    for cls in (
        MLMLoss,
        CLMLoss,
        ClassificationLoss,
        RegressionLoss,
        LogitDistillation,
        TopKLogitDistillation,
        HiddenStateDistillation,
        AttentionDistillation,
        RelationalLoss,
        BlockwiseDistillation,
    )
}


def make_loss(name: str, **kwargs: Any) -> Loss:
    """Build one loss by its config name; unknown names and options are user errors."""
    if name not in LOSSES:
        raise ConfigError(f"loss name={name!r} is unknown; use one of {', '.join(sorted(LOSSES))}")
    cls = LOSSES[name]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(
            f"option(s) {unknown} are not accepted by loss {name!r}; allowed: {sorted(allowed)}"
        )
    return cls(**kwargs)


class CombinedLoss(nn.Module):
    """A weighted sum of losses built from a spec list, e.g.
    ``[{"name": "mlm", "weight": 1.0}, {"name": "relational", "weight": 1.0}]``.

    Each entry may add ``label`` (its key in the parts dict, default the name), ``when`` (the task
    targets at which it applies: ``labels`` / ``teacher`` / ``largest``; default: label losses
    always, teacher losses where a teacher exists) and the loss's own options. ``context`` holds
    options shared by all entries (``n_student_layers``, ``student_width``, ``teacher_width``);
    each loss takes only those its constructor names. ``forward`` returns the total and the
    unweighted, detached parts for logging.
    """

    def __init__(self, spec: Sequence[Mapping[str, Any]], **context: Any) -> None:
        super().__init__()
        if not spec:
            raise ConfigError("train.losses is empty; give at least one, e.g. [{name: mlm}]")
        self.parts = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        self.when: dict[str, tuple[str, ...]] = {}
        for entry in spec:
            options = dict(entry)
            if "name" not in options:
                raise ConfigError(f"loss entry {entry!r} has no 'name'; e.g. {{name: mlm}}")
            name = options.pop("name")
            label = options.pop("label", name)
            weight = float(options.pop("weight", 1.0))
            when = options.pop("when", None)
            if label in self.parts:
                raise ConfigError(f"loss label {label!r} is used twice; give one a 'label'")
            cls = LOSSES.get(name)
            if cls is not None:
                accepted = set(inspect.signature(cls.__init__).parameters)
                options = {k: v for k, v in context.items() if k in accepted} | options
            loss = make_loss(name, **options)
            self.parts[label] = loss
            self.weights[label] = weight
            self.when[label] = tuple(when) if when is not None else loss.default_when
            for target in self.when[label]:
                if target not in ("labels", "teacher", "largest"):
                    raise ConfigError(
                        f"loss {label!r}: when={target!r} unknown; use labels, teacher or largest"
                    )
            if loss.needs_teacher and "labels" in self.when[label]:
                raise ConfigError(f"loss {label!r} needs a teacher, so when cannot include 'labels'")

    def forward(
        self,
        student: Any,
        batch: Mapping[str, Any],
        teacher: Any | None = None,
        target: str = "labels",
        model: nn.Module | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Sum the parts that apply at ``target`` (a ``SubnetTask.target``).

        ``model`` (the elastic model, its sub-network selected) is needed by block-wise parts,
        which run its layers themselves; ``student`` may then be None if no other part applies.
        """
        total: Tensor | None = None
        parts: dict[str, Tensor] = {}
        for label, loss in self.parts.items():
            if target not in self.when[label]:
                continue
            if loss.needs_teacher and teacher is None:
                raise DataError(f"loss {label!r} at target {target!r} needs teacher outputs")
            if getattr(loss, "layerwise_loss", False):
                if model is None:
                    raise ConfigError(f"loss {label!r} runs the model's layers; pass model=")
                value = loss.layerwise(model, batch, teacher)
            else:
                value = loss(student, batch, teacher)
            parts[label] = value.detach()
            weighted = self.weights[label] * value
            total = weighted if total is None else total + weighted
        if total is None:
            raise ConfigError(f"no loss applies at target {target!r}; add one whose 'when' includes it")
        return total, parts

    def attach(self, model: nn.Module, teacher: nn.Module | None) -> None:
        """Let parts that read modules through hooks (``minilm-relation``) register them."""
        for loss in self.parts.values():
            if hasattr(loss, "attach"):
                loss.attach(model, teacher)

    @property
    def layerwise(self) -> bool:
        """Whether some part runs the model's layers itself (block-wise distillation)."""
        return any(getattr(loss, "layerwise_loss", False) for loss in self.parts.values())

    def needs_forward(self, target: str) -> bool:
        """Whether a part applying at ``target`` reads the student's full forward outputs."""
        return any(
            target in self.when[label] and not getattr(loss, "layerwise_loss", False)
            for label, loss in self.parts.items()
        )


__all__ = [
    "LOSSES",
    "AttentionDistillation",
    "BlockwiseDistillation",
    "CLMLoss",
    "ClassificationLoss",
    "CombinedLoss",
    "HiddenStateDistillation",
    "LogitDistillation",
    "Loss",
    "MLMLoss",
    "RegressionLoss",
    "RelationalLoss",
    "TopKLogitDistillation",
    "blockwise_loss",
    "make_loss",
    "standardise_tokens",
    "uniform_layer_map",
]
