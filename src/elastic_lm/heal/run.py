"""The ``heal`` stage of the decoder recipe: heal chosen exports (and baselines, and the teacher) with one
budget, then measure them as a user gets them (held-out perplexity, decode latency, greedy samples).

Writes ``heal/<name>/`` (the healed model: the same stock folder as its export, new weights) and
``heal/results.json``. The test split is read here only for the final numbers.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from elastic_lm.config import Config
from elastic_lm.errors import DataError
from elastic_lm.heal.distill import HealBudget, heal_model, kd_divergence, perplexity
from elastic_lm.io import atomic_write_json

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def nonembedding_params(model: PreTrainedModel) -> int:
    """Parameters other than the token embeddings (a tied LM head counted with them)."""
    unique = {id(p): p.numel() for p in model.parameters()}
    embeddings = {id(model.get_input_embeddings().weight)}
    out = model.get_output_embeddings()
    if out is not None:
        embeddings.add(id(out.weight))
    return sum(unique.values()) - sum(unique.get(i, 0) for i in embeddings)


def load_causal(folder: Path) -> PreTrainedModel:
    """An exported causal LM (stock class, or elastic-lm's for non-uniform shapes), in eval mode."""
    from transformers import AutoModelForCausalLM

    import elastic_lm.model  # noqa: F401  (registers elastic-lm's class)

    return AutoModelForCausalLM.from_pretrained(folder).eval()


def chosen_members(
    run_root: Path, targets: list[float], teacher_params: int
) -> list[tuple[str, Path, float | None]]:
    """``(name, export folder, target)``: every export, or for each target the Pareto member with the
    best quality at or under it (exported now into ``export/trial-N/`` when the export stage had not
    chosen it)."""
    index_file = run_root / "export" / "index.json"
    if not index_file.is_file():
        raise DataError(f"{index_file} does not exist; run the export stage first")
    if not targets:
        return [(e["name"], run_root / e["path"], None) for e in json.loads(index_file.read_text())]
    from elastic_lm.export import export_subnetwork
    from elastic_lm.export.pareto import best_under_budget, pareto_trials
    from elastic_lm.export.supernet import load_supernet

    front, directions, _ = pareto_trials(run_root)
    supernet = load_supernet(run_root / "train" / "supernet")
    out: list[tuple[str, Path, float | None]] = []
    for target in targets:
        budget = int(target * teacher_params)
        trial = best_under_budget(front, directions, budget, supernet, embeddings=False)
        if trial is None or trial.architecture is None:
            continue
        architecture = trial.architecture
        folder = run_root / "export" / f"trial-{trial.number}"
        if not (folder / "config.json").is_file():
            provenance = {**supernet.provenance, "trial": trial.number, "run_dir": str(run_root)}
            export_subnetwork(
                supernet.model, architecture, folder, tokenizer=supernet.tokenizer(),
                provenance=provenance, metrics=trial.metrics,
            )  # fmt: skip
        out.append((folder.name, folder, target))
    return out


class Healer:
    """Everything one ``heal`` stage shares: data, teacher, budget; :meth:`measure` / :meth:`heal`."""

    def __init__(self, config: Config, run_root: Path, log: Callable[[str], None] | None = print) -> None:
        from elastic_lm.data.prepare import prepare_data
        from elastic_lm.teacher import load_teacher, teacher_folder
        from elastic_lm.train.build import fixed_batches, tokenizer_from_config

        self.config, self.root, self.log = config, run_root, log or (lambda _: None)
        h = config.heal
        data_config = config.data
        if h.max_length is not None:
            data_config = data_config.model_copy(update={"max_length": h.max_length})
        self.tokenizer = tokenizer_from_config(config)
        prepared = prepare_data(data_config, self.tokenizer)
        self.train, self.collate = prepared.splits["train"], prepared.collator
        test = prepared.splits["test"]
        if len(test) == 0:
            raise DataError("heal: the test split is empty; set data.test_ratio above 0")
        self.test = fixed_batches(test, self.collate, h.eval_batches, h.batch_size, config.seed)
        self.kd_batches = self.test[: max(1, len(self.test) // 4)]
        source = config.teacher.source if config.teacher.source != "none" else config.model.source
        teacher_section = config.teacher.model_copy(update={"source": source})
        teacher_config = config.model_copy(update={"teacher": teacher_section})
        folder = teacher_folder(teacher_config, progress=False)
        if folder is None:
            raise DataError("heal: no teacher to heal against; set model.source or teacher.source")
        self.teacher = _frozen(load_teacher(folder, "causal-lm"))
        self.teacher_params = nonembedding_params(self.teacher)
        self.kd_teacher: torch.nn.Module = self.teacher  # what healing distils from (see run_heal)
        self.budget = HealBudget.from_section(h, config.seed, config.train.precision)
        self.losses = [{"name": s.name, "weight": s.weight, **s.options} for s in h.losses]

    def samples(self, model: PreTrainedModel) -> list[dict[str, str]]:
        e = self.config.evaluate
        out = []
        for prompt in e.prompts:
            encoded = self.tokenizer(prompt, return_tensors="pt")
            ids = {k: encoded[k] for k in ("input_ids", "attention_mask") if k in encoded}
            with torch.no_grad():
                tokens = cast(Any, model).generate(**ids, max_new_tokens=e.max_new_tokens, do_sample=False)
            text = self.tokenizer.decode(tokens[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
            out.append({"prompt": prompt, "completion": text})
        return out

    def retime(self, names: list[str]) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
        """Decode latency of the healed models ``heal/<name>/`` (stock class, KV cache), measured
        round-robin in one pass at the end: timed one by one across a long stage, a shared machine's
        changing load would decide their ratios. Returns per-name numbers and how they were taken."""
        from elastic_lm.metrics.latency import measure_decode_round_robin

        s, h = self.config.search, self.config.heal
        models = {name: load_causal(self.root / "heal" / name) for name in dict.fromkeys(names)}
        load_before = os.getloadavg()
        measured = measure_decode_round_robin(
            models,
            batch_size=1,
            prompt_len=s.decode_prompt_len,
            new_tokens=s.decode_new_tokens,
            threads=s.latency_threads,
            repeats=h.timing_repeats,
            warmup=1,
        )
        numbers = {
            name: {
                "decode_ms_per_token": m.decode.median_ms,
                "decode_iqr_ms": m.decode.iqr_ms,
                "prefill_ms": m.prefill.median_ms,
            }
            for name, m in measured.items()
        }
        how = {
            "method": "round-robin: every model once per round (prefill + decode steps), median",
            "models": len(models),
            "rounds": h.timing_repeats,
            "threads": s.latency_threads,
            "prompt_len": s.decode_prompt_len,
            "new_tokens": s.decode_new_tokens,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }
        return numbers, how

    def heal(
        self, name: str, kind: str, model: PreTrainedModel, folder: Path | None, target: float | None
    ) -> dict[str, Any]:
        """Measure ``model``, heal it with the shared budget, measure again, save it to ``heal/<name>/``."""
        self.log(f"[heal] {name} ({kind})")
        params = nonembedding_params(model)
        before = {
            "perplexity": perplexity(model, self.test),
            "kd": kd_divergence(model, self.kd_teacher, self.kd_batches),
        }
        record: dict[str, Any] = {"name": name, "kind": kind, "target": target, "params_nonembedding": params}
        record.update(fraction=params / self.teacher_params, before=before)
        started = time.perf_counter()
        kept = _kept_layers(folder)
        result = heal_model(
            model, self.kd_teacher, self.train, self.collate, self.budget, self.losses, self.log, kept
        )
        record["heal"] = {"steps": result.steps, "tokens": result.tokens, "seconds": round(result.seconds, 2)}
        record["after"] = {
            "perplexity": perplexity(model, self.test),
            "kd": kd_divergence(model, self.kd_teacher, self.kd_batches),
            "samples": self.samples(model),
        }
        record["seconds"] = round(time.perf_counter() - started, 2)
        out = self.root / "heal" / name
        save_model(model, self.tokenizer, out, template=folder)
        record["path"] = f"heal/{name}"
        ppl = (record["before"]["perplexity"], record["after"]["perplexity"])
        self.log(f"[heal] {name}: perplexity {ppl[0]:.1f} -> {ppl[1]:.1f}")
        return record


def _kept_layers(folder: Path | None) -> list[int] | None:
    """The teacher positions an exported member kept (from its ``export.json``), or None."""
    record = folder / "export.json" if folder is not None else None
    if record is None or not record.is_file():
        return None
    from elastic_lm.architecture import Architecture

    arch = Architecture.from_dict(json.loads(record.read_text())["architecture"])
    return [i for i, la in enumerate(arch.layers) if not la.is_identity]


def save_model(model: PreTrainedModel, tokenizer: Any, out: Path, template: Path | None) -> None:
    """Write ``out`` through a temporary folder (a copy of ``template`` with the new weights)."""
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    if template is not None:
        shutil.copytree(template, tmp)
        for old in tmp.glob("*.safetensors"):
            old.unlink()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def run_heal(config: Config, run_root: Path, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """The heal stage: members, then (``heal.baselines``) layer dropping and uniform width, and the
    teacher itself with the same budget (first, when ``heal.teacher_correction``: everything else then
    distils from the healed teacher)."""
    h = config.heal
    healer = Healer(config, run_root, log)
    teacher = None
    if h.teacher_correction:
        teacher, corrected = _heal_teacher(healer)
        healer.kd_teacher = _frozen(corrected)  # the healed weights in memory, as saved to heal/teacher
    records = []
    members = chosen_members(run_root, list(h.targets), healer.teacher_params)
    done: dict[str, dict[str, Any]] = {}
    for name, folder, target in members:  # one member may be the choice for two targets: healed once
        record = {**done[name], "target": target} if name in done else None
        record = record or healer.heal(name, "ours", load_causal(folder), folder, target)
        done[name] = record
        records.append(record)
    if h.baselines:
        records += _baselines(healer, [r["target"] or r["fraction"] for r in records])
    if h.teacher and teacher is None:
        teacher, _ = _heal_teacher(healer)
    timed, timing = healer.retime([r["name"] for r in records] + (["teacher"] if teacher else []))
    for r in records + ([teacher] if teacher else []):
        r.update(timed[r["name"]])
    results = {
        "teacher_params_nonembedding": healer.teacher_params,
        "teacher_perplexity": perplexity(healer.teacher, healer.test),
        "teacher_healed_perplexity": None if teacher is None else teacher["after"]["perplexity"],
        "budget": {"tokens": h.tokens, "minutes": h.minutes, "batch_size": h.batch_size, "top_k": h.top_k},
        "distilled_from": "heal/teacher" if h.teacher_correction else "the source model",
        "members": records + ([teacher] if teacher else []),
        "timing": timing,
    }
    atomic_write_json(run_root / "heal" / "results.json", results)
    healed = len(records) + (teacher is not None)
    return {"healed": healed, "teacher_perplexity": results["teacher_perplexity"]}


def _heal_teacher(healer: Healer) -> tuple[dict[str, Any], PreTrainedModel]:
    """The full model, exported as a stock folder like the members, healed from the source model:
    its record and the healed model."""
    from elastic_lm.export import export_subnetwork

    folder = healer.root / "heal" / "baselines" / "teacher"
    full = healer.teacher.backbone.largest()
    export_subnetwork(
        healer.teacher, full, folder, tokenizer=healer.tokenizer, provenance={"baseline": "teacher"}
    )
    model = load_causal(folder)
    return healer.heal("teacher", "teacher", model, folder, 1.0), model


def _frozen(model: Any) -> Any:
    """``model`` in eval mode with no parameter that trains (a distillation target)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def _baselines(healer: Healer, fractions: list[float]) -> list[dict[str, Any]]:
    from elastic_lm.export import export_subnetwork
    from elastic_lm.heal.baselines import baseline_members
    from elastic_lm.importance.decoder import decoder_importance, layer_scores
    from elastic_lm.train.calibrate import calibration_batches

    config = healer.config
    h = config.heal
    source = copy.deepcopy(healer.teacher).eval()
    scores = decoder_importance(source, calibration_batches(config, h.importance_batches), [h.layer_score])
    ranking = layer_scores(scores, h.layer_score)
    records = []
    for fraction in dict.fromkeys(fractions):
        target = fraction * healer.teacher_params
        for kind, (model, arch) in baseline_members(source, ranking, target).items():
            name = f"{kind}-{round(100 * fraction)}"
            folder = healer.root / "heal" / "baselines" / name
            export_subnetwork(model, arch, folder, tokenizer=healer.tokenizer, provenance={"baseline": kind})
            records.append(healer.heal(name, kind, load_causal(folder), folder, fraction))
    return records


__all__ = ["Healer", "chosen_members", "load_causal", "nonembedding_params", "run_heal", "save_model"]
