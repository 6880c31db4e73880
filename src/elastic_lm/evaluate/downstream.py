"""Downstream evaluation of exported models: the papers' GLUE-style tables.

A search ranks sub-networks by cheap proxies on the super-network; what a user ships is the exported
standalone model, and what they care about is how it does on a task once fine-tuned. So every
encoder (exported masked-LM folders, plus optional reference models such as the unpruned source) is
fine-tuned on every configured classification task with one fixed, seeded budget -- the differences in
the table come from the models, never from the recipe -- and scored on the task's test split
(accuracy and F1). Decoders (causal-LM exports) get held-out perplexity on the corpus and greedy
continuations of a few fixed prompts.

Fine-tuning reuses the project's training loop (``train_supernet`` with the standard strategy on a
one-member space, as the teacher's re-training does), so seeding, warm-up, clipping and devices are
those of every other run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from elastic_lm.data.config import DataConfig
from elastic_lm.errors import ConfigError, DataError
from elastic_lm.io import atomic_write_json, atomic_write_text

ModelKind = Literal["encoder", "decoder"]
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")


# --- values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FineTuneBudget:
    """The one recipe every encoder gets on every task (what makes the table a fair comparison)."""

    steps: int = 60
    batch_size: int = 16
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"


@dataclass(frozen=True)
class ModelEntry:
    """A model folder to evaluate; ``origin`` is ``export`` (from ``export/index.json``) or ``reference``."""

    name: str
    path: Path
    origin: str = "export"


@dataclass(frozen=True)
class TaskScore:
    """Test-split scores of one fine-tuned model on one task."""

    accuracy: float
    f1: float
    f1_average: str  # "binary" (positive class = label id 1) or "macro"
    num_labels: int
    test_examples: int


@dataclass(frozen=True)
class EncoderResult:
    """One row of the encoder table."""

    name: str
    path: str
    params: int
    tasks: dict[str, TaskScore]

    @property
    def average(self) -> dict[str, float]:
        """Unweighted mean over tasks, as GLUE averages report it."""
        n = max(len(self.tasks), 1)
        return {
            "accuracy": sum(s.accuracy for s in self.tasks.values()) / n,
            "f1": sum(s.f1 for s in self.tasks.values()) / n,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "params": self.params,
            "tasks": {k: asdict(v) for k, v in self.tasks.items()},
            "average": self.average,
        }


@dataclass(frozen=True)
class DecoderResult:
    """One row of the decoder table: held-out perplexity and greedy samples."""

    name: str
    path: str
    params: int
    perplexity: float
    tokens: int
    samples: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DownstreamResults:
    """Everything ``evaluate/downstream.json`` holds."""

    tasks: list[str]
    settings: dict[str, Any]
    encoders: list[EncoderResult]
    decoders: list[DecoderResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "settings": self.settings,
            "encoders": [e.to_dict() for e in self.encoders],
            "decoders": [d.to_dict() for d in self.decoders],
        }


# --- metrics ------------------------------------------------------------------------------------


def classification_metrics(
    predictions: Sequence[int], labels: Sequence[int], num_labels: int
) -> dict[str, float]:
    """Accuracy and F1: binary F1 of class 1 for two classes (spam, positive), else macro F1.

    A class with no true and no predicted example contributes F1 0 to the macro mean (as scikit-learn
    with ``labels=range(K), zero_division=0``), so a model that ignores a class is not flattered.
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not labels:
        raise DataError("the test split is empty; raise data test_ratio or max_examples")
    pairs = list(zip((int(p) for p in predictions), (int(y) for y in labels), strict=True))
    accuracy = sum(p == y for p, y in pairs) / len(pairs)

    def f1_of(c: int) -> float:
        tp = sum(p == c and y == c for p, y in pairs)
        fp = sum(p == c and y != c for p, y in pairs)
        fn = sum(p != c and y == c for p, y in pairs)
        return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)

    f1 = f1_of(1) if num_labels == 2 else sum(f1_of(c) for c in range(num_labels)) / num_labels
    return {"accuracy": accuracy, "f1": f1}


# --- models -------------------------------------------------------------------------------------


def model_kind(folder: str | Path) -> ModelKind:
    """``decoder`` for causal-LM folders (GPT-2, Llama, elastic-lm causal), else ``encoder``."""
    config = _read_config(Path(folder))
    if config.get("model_type") == "elastic-lm":
        return "decoder" if config.get("task") == "causal-lm" else "encoder"
    archs = config.get("architectures") or []
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    return "decoder" if causal else "encoder"


def folder_params(folder: str | Path) -> int:
    """Parameters stored in the folder's safetensors files (tied weights are stored once)."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise DataError(f"{folder} has no .safetensors weights; re-export it ('elastic-lm export')")
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def load_tokenizer(folder: str | Path, fallback: Callable[[], Any] | None = None) -> Any:
    """The folder's own tokenizer, else ``fallback()`` (the run's ``model.tokenizer`` / source)."""
    from transformers import AutoTokenizer

    if any((Path(folder) / name).is_file() for name in _TOKENIZER_FILES):
        return AutoTokenizer.from_pretrained(str(folder))
    if fallback is None:
        raise DataError(
            f"{folder} has no tokenizer files; set model.tokenizer (an asset or a folder) so "
            "evaluation can tokenize the tasks"
        )
    return fallback()


def _read_config(folder: Path) -> dict[str, Any]:
    file = folder / "config.json"
    if not file.is_file():
        raise DataError(
            f"{folder} has no config.json; it is not a model folder ('elastic-lm export' writes one)"
        )
    return json.loads(file.read_text(encoding="utf-8"))


# --- encoders -----------------------------------------------------------------------------------


def fine_tune(folder: str | Path, data: Any, budget: FineTuneBudget, work_dir: str | Path) -> nn.Module:
    """Fine-tune ``AutoModelForSequenceClassification`` from ``folder`` on prepared ``data``.

    The head is initialised from a seed derived from ``budget.seed``, and the loop replays batches and
    dropout from the same seed, so the same model and budget give the same weights.
    """
    from transformers import AutoModelForSequenceClassification

    import elastic_lm.model  # noqa: F401  (registers elastic-lm's own classes with the Auto API)
    from elastic_lm.train.loop import TrainSettings, derive_seed, seed_everything
    from elastic_lm.train.single import train_one_model

    seed_everything(derive_seed(budget.seed, "downstream-head"))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=data.num_labels)
    settings = TrainSettings(
        steps=budget.steps,
        batch_size=budget.batch_size,
        learning_rate=budget.learning_rate,
        warmup_fraction=budget.warmup_fraction,
        seed=budget.seed,
        device=budget.device,  # type: ignore[arg-type]
        checkpoint_every=budget.steps,
        eval_every=budget.steps,
        keep_checkpoints=1,
        progress=False,
        tensorboard=False,
        collate_fn=data.collator,
    )
    work = Path(work_dir)
    shutil.rmtree(work, ignore_errors=True)  # a crashed earlier attempt must not be "resumed"
    try:
        train_one_model(
            model,
            [{"name": "classification"}],
            data.splits["train"],
            settings=settings,
            run_dir=work,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return model


@torch.no_grad()
def predict_labels(model: nn.Module, loader: Any) -> tuple[list[int], list[int]]:
    """Arg-max predictions and gold labels over a classification loader."""
    model.eval()
    device = next(model.parameters()).device
    predictions: list[int] = []
    labels: list[int] = []
    for batch in loader:
        inputs = {
            k: v.to(device)
            for k, v in batch.items()
            if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        logits = model(**inputs).logits
        predictions += logits.argmax(-1).tolist()
        labels += batch["labels"].tolist()
    return predictions, labels


def evaluate_encoder(
    entry: ModelEntry,
    tasks: Sequence[tuple[str, DataConfig]],
    budget: FineTuneBudget,
    work_dir: str | Path,
    tokenizer_fallback: Callable[[], Any] | None = None,
) -> EncoderResult:
    """Fine-tune ``entry`` on each task and score it on that task's test split."""
    from elastic_lm.data.prepare import prepare_data

    tokenizer = load_tokenizer(entry.path, tokenizer_fallback)
    scores: dict[str, TaskScore] = {}
    for name, data_config in tasks:
        data = prepare_data(data_config, tokenizer)
        model = fine_tune(entry.path, data, budget, Path(work_dir) / _slug(entry.name) / _slug(name))
        loader = data.dataloaders(budget.batch_size, seed=budget.seed).test
        predictions, labels = predict_labels(model, loader)
        metrics = classification_metrics(predictions, labels, data.num_labels)
        scores[name] = TaskScore(
            accuracy=metrics["accuracy"],
            f1=metrics["f1"],
            f1_average="binary" if data.num_labels == 2 else "macro",
            num_labels=data.num_labels,
            test_examples=len(labels),
        )
        del model
    return EncoderResult(entry.name, str(entry.path), folder_params(entry.path), scores)


# --- decoders -----------------------------------------------------------------------------------


def load_causal_lm(folder: str | Path) -> nn.Module:
    """The folder as a causal LM (stock classes, or elastic-lm's own once registered), in eval mode."""
    from transformers import AutoModelForCausalLM

    import elastic_lm.model  # noqa: F401

    return AutoModelForCausalLM.from_pretrained(str(folder)).eval()


@torch.no_grad()
def perplexity(model: nn.Module, blocks: Any, batch_size: int = 8) -> tuple[float, int]:
    """exp(mean next-token NLL) over the tokens of ``blocks``, and how many tokens were predicted."""
    device = next(model.parameters()).device
    nll = torch.zeros((), dtype=torch.float64)
    count = 0
    for start in range(0, len(blocks), batch_size):
        rows = blocks[start : start + batch_size]
        ids = torch.tensor(rows["input_ids"], device=device)
        mask = torch.tensor(rows["attention_mask"], device=device) if "attention_mask" in rows else None
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        targets = ids[:, 1:]
        keep = torch.ones_like(targets, dtype=torch.bool) if mask is None else mask[:, 1:].bool()
        losses = nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
        )
        nll += losses[keep.reshape(-1)].double().sum().cpu()
        count += int(keep.sum())
    if count == 0:
        raise DataError(
            "no held-out tokens to score perplexity on; lower evaluate.max_length or raise "
            "evaluate.max_examples / data.test_ratio"
        )
    return float(torch.exp(nll / count)), count


@torch.no_grad()
def greedy_continuation(model: nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int) -> str:
    """The greedy continuation of ``prompt`` (without the prompt).

    Uses ``generate`` where the model supports it (stock GPT-2 / Llama and elastic-lm's own causal
    class, both with a KV cache); any other model gets a plain loop that picks the same tokens, slower.
    """
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
    eos = tokenizer.eos_token_id
    can_generate = getattr(model, "can_generate", None)
    if callable(can_generate) and can_generate():
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
        )
        new = out[0, ids.shape[1] :]
    else:
        new = greedy_tokens(model, ids, max_new_tokens, eos)
    return tokenizer.decode(new, skip_special_tokens=True)


def greedy_tokens(model: nn.Module, ids: torch.Tensor, max_new_tokens: int, eos: int | None) -> torch.Tensor:
    """Up to ``max_new_tokens`` arg-max tokens after ``ids`` [1, T] (stops after EOS); no cache."""
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        token = int(logits[0, -1].argmax())
        new.append(token)
        ids = torch.cat([ids, ids.new_tensor([[token]])], dim=1)
        if eos is not None and token == eos:
            break
    return torch.tensor(new, dtype=torch.long)


def evaluate_decoder(
    entry: ModelEntry,
    corpus: DataConfig,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 8,
    tokenizer_fallback: Callable[[], Any] | None = None,
    device: str = "auto",
) -> DecoderResult:
    """Held-out perplexity on ``corpus``'s test split (as causal LM) and greedy prompt continuations."""
    from elastic_lm.data.prepare import prepare_data

    tokenizer = load_tokenizer(entry.path, tokenizer_fallback)
    data = prepare_data(corpus.model_copy(update={"task": "clm"}), tokenizer)
    model = load_causal_lm(entry.path).to(_device(device))
    ppl, tokens = perplexity(model, data.splits["test"], batch_size)
    samples = [
        {"prompt": p, "completion": greedy_continuation(model, tokenizer, p, max_new_tokens)} for p in prompts
    ]
    return DecoderResult(entry.name, str(entry.path), folder_params(entry.path), ppl, tokens, samples)


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --- which models -------------------------------------------------------------------------------


def exported_models(
    run_dir: str | Path, models: str = "all", max_models: int | None = None
) -> list[ModelEntry]:
    """The models ``export/index.json`` lists (``pareto``: only current Pareto members), in its order."""
    run_dir = Path(run_dir)
    index = run_dir / "export" / "index.json"
    if not index.is_file():
        raise DataError(f"{index} is missing; export models first: 'elastic-lm export {run_dir} --pareto'")
    try:
        records = json.loads(index.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(
            f"{index} is not valid JSON ({error}); re-run 'elastic-lm export {run_dir} --pareto'"
        ) from None
    if not isinstance(records, list):
        raise DataError(f"{index} must hold a list of {{'name', 'path'}} records; re-run 'elastic-lm export'")
    entries = []
    for i, record in enumerate(records):
        if not isinstance(record, dict) or "name" not in record or "path" not in record:
            raise DataError(
                f"{index} entry {i} lacks 'name' or 'path'; re-run 'elastic-lm export {run_dir} --pareto'"
            )
        folder = run_dir / str(record["path"])
        if not folder.is_dir():
            raise DataError(
                f"{index} entry {record['name']!r}: folder {folder} does not exist; "
                "re-run 'elastic-lm export'"
            )
        entries.append(ModelEntry(str(record["name"]), folder, "export"))
    if models == "pareto":
        from elastic_lm.export.pareto import pareto_trials

        front = {t.number for t in pareto_trials(run_dir)[0]}
        entries = [e for e in entries if _trial_number(e) in front]
    elif models != "all":
        raise DataError(f"evaluate.models={models!r} is unknown; use 'all' or 'pareto'")
    return entries[:max_models] if max_models is not None else entries


def _trial_number(entry: ModelEntry) -> int | None:
    """The search trial an export came from (``export.json`` provenance, else a ``trial-N`` name)."""
    card = entry.path / "export.json"
    if card.is_file():
        trial = json.loads(card.read_text(encoding="utf-8")).get("provenance", {}).get("trial")
        if trial is not None:
            return int(trial)
    match = re.fullmatch(r"trial-(\d+)", entry.name)
    return int(match.group(1)) if match else None


def reference_models(references: Sequence[str]) -> list[ModelEntry]:
    """Reference models (asset names or folders), named by the asset or folder name."""
    from elastic_lm.assets.models import model_folder

    entries = []
    for ref in references:
        try:
            folder = model_folder(ref)
        except ConfigError:
            raise ConfigError(
                f"evaluate.references entry {ref!r} is neither a known asset nor a folder with "
                "config.json; give an asset name (e.g. minilm-l6) or a model folder"
            ) from None
        entries.append(ModelEntry(Path(ref).name, folder, "reference"))
    return entries


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"


# --- the whole evaluation -----------------------------------------------------------------------


def evaluate_models(
    models: Sequence[ModelEntry],
    tasks: Sequence[tuple[str, DataConfig]],
    budget: FineTuneBudget,
    *,
    corpus: DataConfig | None,
    prompts: Sequence[str] = (),
    max_new_tokens: int = 20,
    work_dir: str | Path,
    tokenizer_fallback: Callable[[], Any] | None = None,
) -> DownstreamResults:
    """Encoders fine-tuned on ``tasks``; decoders scored on ``corpus`` (needed only if there are any)."""
    encoders: list[EncoderResult] = []
    decoders: list[DecoderResult] = []
    for entry in models:
        if model_kind(entry.path) == "encoder":
            encoders.append(evaluate_encoder(entry, tasks, budget, work_dir, tokenizer_fallback))
            continue
        if corpus is None:
            raise DataError(
                f"{entry.name} is a causal LM; perplexity needs a corpus (the config's data section)"
            )
        decoders.append(
            evaluate_decoder(
                entry, corpus, prompts, max_new_tokens, budget.batch_size, tokenizer_fallback, budget.device
            )
        )
    settings = {**asdict(budget), "prompts": list(prompts), "max_new_tokens": max_new_tokens}
    settings["task_data"] = {name: cfg.model_dump(mode="json") for name, cfg in tasks}
    if corpus is not None:
        settings["corpus"] = corpus.model_dump(mode="json")
    return DownstreamResults([name for name, _ in tasks], settings, encoders, decoders)


def write_downstream(folder: str | Path, results: DownstreamResults) -> tuple[Path, Path]:
    """``downstream.json`` (everything) and ``downstream.csv`` (one row per model), written atomically."""
    folder = Path(folder)
    json_path = atomic_write_json(folder / "downstream.json", results.to_dict())
    task_columns = [f"{t}/{m}" for t in results.tasks for m in ("accuracy", "f1")]
    header = ["kind", "name", "path", "params", *task_columns, "average/accuracy", "average/f1", "perplexity"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for e in results.encoders:
        row: dict[str, Any] = {"kind": "encoder", "name": e.name, "path": e.path, "params": e.params}
        for task, score in e.tasks.items():
            row[f"{task}/accuracy"] = f"{score.accuracy:.6f}"
            row[f"{task}/f1"] = f"{score.f1:.6f}"
        row["average/accuracy"] = f"{e.average['accuracy']:.6f}"
        row["average/f1"] = f"{e.average['f1']:.6f}"
        writer.writerow(row)
    for d in results.decoders:
        writer.writerow(
            {
                "kind": "decoder",
                "name": d.name,
                "path": d.path,
                "params": d.params,
                "perplexity": f"{d.perplexity:.6f}",
            }
        )
    csv_path = atomic_write_text(folder / "downstream.csv", buffer.getvalue())
    return json_path, csv_path


__all__ = [
    "DecoderResult",
    "DownstreamResults",
    "EncoderResult",
    "FineTuneBudget",
    "ModelEntry",
    "TaskScore",
    "classification_metrics",
    "evaluate_decoder",
    "evaluate_encoder",
    "evaluate_models",
    "exported_models",
    "fine_tune",
    "folder_params",
    "greedy_continuation",
    "greedy_tokens",
    "load_tokenizer",
    "model_kind",
    "perplexity",
    "reference_models",
    "write_downstream",
]
