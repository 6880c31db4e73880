"""Uniform BERT / RoBERTa / GPT-2 / Llama sub-networks are saved as stock transformers classes that load
in a process where elastic-lm cannot even be imported, and compute what the super-network computes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import save_file

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.export import export_subnetwork, stock_fit
from elastic_lm.model import ElasticConfig, ElasticModel, build_model
from export_cases import main_output

VOCAB = 50
COMMON = {
    "vocab_size": VOCAB,
    "hidden_size": 16,
    "num_layers": 3,
    "num_attention_heads": 4,
    "head_dim": 4,
    "intermediate_size": 12,
    "max_position_embeddings": 32,
    "num_labels": 3,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
FAMILIES = {
    "bert": {"block_candidates": [["bert"]] * 3},
    "roberta": {
        "block_candidates": [["bert"]] * 3,
        "pad_token_id": 1,
        "position_offset": 2,
        "type_vocab_size": 1,
    },
    "gpt2": {
        "block_candidates": [["gpt2"]] * 3,
        "type_vocab_size": 0,
        "embedding_norm": False,
        "final_norm": True,
        "hidden_act": "gelu_new",
    },
    "llama": {
        "block_candidates": [["llama"]] * 3,
        "hidden_size": 12,
        "num_key_value_heads": 2,
        "type_vocab_size": 0,
        "embedding_norm": False,
        "final_norm": True,
        "norm": "rmsnorm",
        "norm_eps": 1e-6,
        "positions": "rope",
        "use_bias": False,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
    },
}
# (family, task or None for the bare backbone, stock class)
CASES = [
    ("bert", "masked-lm", "BertForMaskedLM"),
    ("bert", "sequence-classification", "BertForSequenceClassification"),
    ("bert", None, "BertModel"),
    ("roberta", "masked-lm", "RobertaForMaskedLM"),
    ("roberta", "sequence-classification", "RobertaForSequenceClassification"),
    ("gpt2", "causal-lm", "GPT2LMHeadModel"),
    ("llama", "causal-lm", "LlamaForCausalLM"),
]
AUTO = {
    "masked-lm": "AutoModelForMaskedLM",
    "causal-lm": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    None: "AutoModel",
}

CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["elastic_lm"] = None  # elastic-lm must not be needed (nor importable) to load these
    try:
        import elastic_lm  # noqa: F401
        raise SystemExit("elastic_lm is importable in the child")
    except ImportError:
        pass
    import torch, transformers
    from safetensors.torch import load_file
    transformers.logging.set_verbosity_error()
    out = {}
    for case in json.loads(sys.argv[1]):
        auto = getattr(transformers, case["auto"])
        kwargs = {"add_pooling_layer": False} if case["auto"] == "AutoModel" else {}
        model = auto.from_pretrained(case["dir"], **kwargs).eval()
        data = load_file(case["dir"] + ".expected.safetensors")
        with torch.inference_mode():
            res = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"])
        got = res.logits if getattr(res, "logits", None) is not None else res.last_hidden_state
        mask = data["attention_mask"].bool()
        a, b = (got[mask], data["expected"][mask]) if got.dim() == 3 else (got, data["expected"])
        out[case["dir"]] = {
            "class": type(model).__name__,
            "diff": float((a - b).abs().max()),
            "params": sum(p.numel() for p in model.parameters()),
        }
    print(json.dumps(out))
    """
)


def make_supernet(family: str, task: str | None):
    torch.manual_seed(0)
    config = ElasticConfig(**{**COMMON, **FAMILIES[family], "task": task or "masked-lm"})
    return (ElasticModel(config) if task is None else build_model(config)).eval()


def sub_architecture(family: str) -> Architecture:
    """Uniform, with a dropped middle layer and explicit head / unit subsets (applied by extraction)."""
    if family == "llama":  # 4 heads in 2 KV groups -> keep KV group 1 with both of its heads
        layer = LayerArch("llama", head_ids=(2, 3), ffn=7)
        return Architecture(
            hidden=12, layers=(layer, LayerArch("identity"), LayerArch("llama", heads=2, kv_heads=1, ffn=7))
        )
    block = "gpt2" if family == "gpt2" else "bert"
    return Architecture(
        hidden=8,
        layers=(
            LayerArch(block, head_ids=(1, 3), ffn=5),
            LayerArch("identity"),
            LayerArch(block, heads=2, ffn_ids=(0, 4, 6, 7, 11)),
        ),
    )


def test_stock_exports_load_without_elastic_lm_and_match_the_super_network(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    cases, expected_params = [], {}
    for family, task, cls in CASES:
        model, arch = make_supernet(family, task), sub_architecture(family)
        out = tmp_path / f"{family}-{task}"
        done = export_subnetwork(model, arch, out)
        assert done.format == "stock"
        assert done.model_class == cls
        with torch.inference_mode(), model.using(arch):
            expected = main_output(model(input_ids=ids, attention_mask=mask))
        save_file(
            {"input_ids": ids, "attention_mask": mask, "expected": expected.contiguous()},
            f"{out}.expected.safetensors",
        )
        cases.append({"dir": str(out), "auto": AUTO[task]})
        expected_params[str(out)] = (cls, done.params)
    run = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    for path, (cls, params) in expected_params.items():
        assert results[path]["class"] == cls
        assert results[path]["diff"] <= 1e-5, (path, results[path])
        if cls != "BertModel":  # count_params counts the MLM head of a bare backbone's config
            assert results[path]["params"] == params, path


def test_shapes_without_a_stock_form_say_why() -> None:
    model = make_supernet("bert", "masked-lm")
    mixed_width = Architecture(hidden=16, layers=(LayerArch("bert", heads=2, ffn=5),) * 3)
    assert (
        stock_fit(model.extract(mixed_width)).reason
        == "2 heads x head_dim 4 != hidden 16 (stock bert needs equality)"
    )
    uneven = Architecture(hidden=16, layers=(LayerArch("bert"), LayerArch("bert", ffn=5), LayerArch("bert")))
    assert stock_fit(model.extract(uneven)).reason == "layers differ in width, heads or FFN size"
    llama = make_supernet("llama", "sequence-classification")
    assert "no stock class" in stock_fit(llama.extract(llama.architecture)).reason
