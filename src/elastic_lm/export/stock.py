"""Stock Hugging Face classes for extracted sub-networks whose shape they can hold exactly.

A uniform sub-network (every layer the same block type with the same heads and FFN width, at the global
width) is an ordinary BERT / RoBERTa, GPT-2 or Llama: saving it as one means users load it with plain
``AutoModelFor*.from_pretrained(dir)``, without elastic-lm, and every runtime and tool that knows those
classes (ONNX, quantisers, serving stacks) works on it. Anything else stays in elastic-lm's own class.

Weights are copied from the *extracted* model (``ElasticPreTrainedModel.extract``), so explicit head or
unit subsets have already been applied and only renaming (and GPT-2's fused, transposed ``Conv1D``
layout) is left to do here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedConfig,
    PreTrainedModel,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForSequenceClassification,
    RobertaModel,
)

from elastic_lm.convert.names import BERT_NAMES, GPT2_NAMES, LLAMA_NAMES, Rename, rename, to_hf
from elastic_lm.model import ElasticConfig, ElasticModel, ElasticPreTrainedModel

# task (None = bare backbone) -> stock class, per family
STOCK_CLASSES: dict[str, dict[str | None, type[PreTrainedModel]]] = {
    "bert": {
        None: BertModel,
        "masked-lm": BertForMaskedLM,
        "sequence-classification": BertForSequenceClassification,
    },
    "roberta": {
        None: RobertaModel,
        "masked-lm": RobertaForMaskedLM,
        "sequence-classification": RobertaForSequenceClassification,
    },
    "gpt2": {"causal-lm": GPT2LMHeadModel},
    "llama": {"causal-lm": LlamaForCausalLM},
}


@dataclass(frozen=True)
class StockFit:
    """Which stock family a model fits, or why none does (shown in the model card)."""

    family: str | None
    reason: str

    @property
    def fits(self) -> bool:
        return self.family is not None


def task_of(model: ElasticPreTrainedModel) -> str | None:
    """The task head a model carries; ``None`` for the bare backbone."""
    return None if isinstance(model, ElasticModel) else model.config.task


def stock_fit(model: ElasticPreTrainedModel) -> StockFit:
    """Whether an extracted model is exactly a stock BERT / RoBERTa / GPT-2 / Llama, and which."""
    c: ElasticConfig = model.config
    arch = c.fixed_architecture
    if arch is None:
        return StockFit(None, "not an extracted model (no fixed architecture)")
    layers = arch.layers
    if not layers:
        return StockFit(None, "no layer is kept")
    blocks = {la.block for la in layers}
    if len(blocks) != 1:
        return StockFit(None, f"mixed block types {sorted(blocks)}")
    block = blocks.pop()
    if block not in ("bert", "gpt2", "llama"):
        return StockFit(None, f"block type {block!r} has no stock Hugging Face class")
    widths = {(la.hidden or arch.hidden, la.heads, la.kv_heads, la.ffn) for la in layers}
    if len(widths) != 1:
        return StockFit(None, "layers differ in width, heads or FFN size")
    hidden, heads, kv, ffn = widths.pop()
    if hidden != arch.hidden:
        return StockFit(None, f"layers run at width {hidden}, the embeddings at {arch.hidden}")
    if heads == 0 or ffn == 0:
        return StockFit(None, "a layer has no attention heads or no FFN units")
    family = "roberta" if block == "bert" and c.position_offset else block
    task = task_of(model)
    if task not in STOCK_CLASSES[family]:
        return StockFit(None, f"{family} has no stock class for task {task or 'backbone'}")
    expected: dict[str, Any] = {
        "bert": {"norm": "layernorm", "positions": "learned", "embedding_norm": True, "final_norm": False},
        "gpt2": {"norm": "layernorm", "positions": "learned", "embedding_norm": False, "final_norm": True},
        "llama": {"norm": "rmsnorm", "positions": "rope", "embedding_norm": False, "final_norm": True},
    }[block]
    if block != "llama":
        expected["use_bias"] = True
    for name, value in expected.items():
        if getattr(c, name) != value:
            return StockFit(None, f"{name}={getattr(c, name)!r} differs from stock {family} ({value!r})")
    if block != "llama" and heads * c.head_dim != hidden:
        return StockFit(
            None, f"{heads} heads x head_dim {c.head_dim} != hidden {hidden} (stock {family} needs equality)"
        )
    if block == "llama" and hidden % heads:
        return StockFit(None, f"hidden {hidden} is not a multiple of {heads} heads (LlamaConfig requires it)")
    if block != "llama" and kv != heads:
        return StockFit(None, "grouped-query attention has no stock BERT / GPT-2 form")
    if block == "bert" and c.type_vocab_size < 1:
        return StockFit(None, "BERT needs at least one token type")
    if block != "bert" and c.type_vocab_size:
        return StockFit(None, f"{family} has no token-type embeddings")
    if task == "masked-lm" and not c.tie_word_embeddings:
        return StockFit(None, "the MLM decoder is not tied to the word embeddings")
    if task == "sequence-classification" and c.pooling != "first":
        return StockFit(None, f"pooling={c.pooling!r}; stock BERT pools the first token")
    if family == "roberta":
        if c.pad_token_id is None or c.position_offset != c.pad_token_id + 1:
            return StockFit(None, "position offset is not RoBERTa's pad_token_id + 1")
        if task == "masked-lm" and c.hidden_act != "gelu":
            return StockFit(None, "RoBERTa's MLM head always uses gelu")
    return StockFit(family, f"uniform {family}: {len(layers)} layers, {heads} heads, FFN {ffn}")


# -- configs -----------------------------------------------------------------------------------------
def _shared(c: ElasticConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"vocab_size": c.vocab_size, "tie_word_embeddings": bool(c.tie_word_embeddings)}
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):  # None too: no stock defaults
        out[name] = getattr(c, name, None)
    if c.task == "sequence-classification":
        out["id2label"] = {int(k): v for k, v in c.id2label.items()}
        out["label2id"] = dict(c.label2id)
    return out


def _layer_sizes(c: ElasticConfig) -> tuple[int, int, int, int]:
    arch = c.fixed_architecture
    assert arch is not None
    first = arch.layers[0]
    return len(arch.layers), first.heads, first.kv_heads or first.heads, first.ffn


def _bert_config(c: ElasticConfig, roberta: bool) -> PreTrainedConfig:
    layers, heads, _, ffn = _layer_sizes(c)
    cls = RobertaConfig if roberta else BertConfig
    return cls(
        hidden_size=c.hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        hidden_act=c.hidden_act,
        hidden_dropout_prob=c.hidden_dropout_prob,
        attention_probs_dropout_prob=c.attention_probs_dropout_prob,
        max_position_embeddings=c.max_position_embeddings,
        type_vocab_size=c.type_vocab_size,
        layer_norm_eps=c.norm_eps,
        initializer_range=c.initializer_range,
        **_shared(c),
    )


def _gpt2_config(c: ElasticConfig) -> PreTrainedConfig:
    layers, heads, _, ffn = _layer_sizes(c)
    return GPT2Config(
        n_embd=c.hidden_size,
        n_layer=layers,
        n_head=heads,
        n_inner=ffn,
        n_positions=c.max_position_embeddings,
        activation_function=c.hidden_act,
        resid_pdrop=c.hidden_dropout_prob,
        embd_pdrop=c.hidden_dropout_prob,
        attn_pdrop=c.attention_probs_dropout_prob,
        layer_norm_epsilon=c.norm_eps,
        initializer_range=c.initializer_range,
        **_shared(c),
    )


def _llama_config(c: ElasticConfig) -> PreTrainedConfig:
    layers, heads, kv, ffn = _layer_sizes(c)
    return LlamaConfig(
        hidden_size=c.hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=c.head_dim,
        intermediate_size=ffn,
        hidden_act=c.hidden_act,
        max_position_embeddings=c.max_position_embeddings,
        rms_norm_eps=c.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": float(c.rope_theta)},
        attention_bias=bool(c.use_bias),
        mlp_bias=bool(c.use_bias),
        attention_dropout=c.attention_probs_dropout_prob,
        initializer_range=c.initializer_range,
        **_shared(c),
    )


# -- weight names --------------------------------------------------------------------------------------

_BERT_LAYER: Rename = to_hf(BERT_NAMES)
_BERT_HEADS: Rename = [
    (r"^mlm\.dense\.", "cls.predictions.transform.dense."),
    (r"^mlm\.norm\.", "cls.predictions.transform.LayerNorm."),
    (r"^mlm\.bias$", "cls.predictions.bias"),
    (r"^pooler\.", "bert.pooler.dense."),
    (r"^classifier\.", "classifier."),
]
_ROBERTA_HEADS: Rename = [
    (r"^mlm\.dense\.", "lm_head.dense."),
    (r"^mlm\.norm\.", "lm_head.layer_norm."),
    (r"^mlm\.bias$", "lm_head.bias"),
    (r"^pooler\.", "classifier.dense."),
    (r"^classifier\.", "classifier.out_proj."),
]
_GPT2: Rename = to_hf(GPT2_NAMES)
_LLAMA: Rename = to_hf(LLAMA_NAMES)


def _split(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Backbone weights (without the ``model.`` prefix of task models) and head weights."""
    body, heads = {}, {}
    for name, t in state.items():
        if name.startswith("model."):
            body[name[len("model.") :]] = t
        elif name.startswith(("embeddings.", "layers.", "final_norm.")):
            body[name] = t
        else:
            heads[name] = t
    return body, heads


def _bert_weights(state: dict[str, torch.Tensor], family: str, task: str | None) -> dict[str, torch.Tensor]:
    body, heads = _split(state)
    base = "" if task is None else f"{family}."
    out = {base + _need(rename(n, _BERT_LAYER), n): t for n, t in body.items()}
    table = _ROBERTA_HEADS if family == "roberta" else _BERT_HEADS
    out.update({_need(rename(n, table), n): t for n, t in heads.items()})
    return out


def _gpt2_weights(state: dict[str, torch.Tensor], family: str, task: str | None) -> dict[str, torch.Tensor]:
    body, heads = _split(state)
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for n, t in body.items():
        m = re.match(r"^layers\.(\d+)\.attention\.([qkv])\.(weight|bias)$", n)
        if m:
            fused.setdefault(f"transformer.h.{m[1]}.attn.c_attn.{m[3]}", {})[m[2]] = t
            continue
        new = "transformer." + _need(rename(n, _GPT2), n)
        conv1d = re.search(r"\.(c_proj|c_fc)\.weight$", new) is not None  # stored as (in, out)
        out[new] = t.t().contiguous() if conv1d else t
    for name, parts in fused.items():
        cat = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        out[name] = cat.t().contiguous() if name.endswith("weight") else cat
    out.update({n: t for n, t in heads.items() if n == "lm_head.weight"})
    return out


def _llama_weights(state: dict[str, torch.Tensor], family: str, task: str | None) -> dict[str, torch.Tensor]:
    body, heads = _split(state)
    out = {"model." + _need(rename(n, _LLAMA), n): t for n, t in body.items()}
    out.update({n: t for n, t in heads.items() if n == "lm_head.weight"})
    return out


def _need(new: str | None, old: str) -> str:
    if new is None:  # a bug: stock_fit accepted a model with a weight we cannot place
        raise RuntimeError(f"weight {old!r} has no place in the stock model")
    return new


_FAMILY: dict[
    str, tuple[Callable[[ElasticConfig], PreTrainedConfig], Callable[..., dict[str, torch.Tensor]]]
] = {
    "bert": (lambda c: _bert_config(c, roberta=False), _bert_weights),
    "roberta": (lambda c: _bert_config(c, roberta=True), _bert_weights),
    "gpt2": (_gpt2_config, _gpt2_weights),
    "llama": (_llama_config, _llama_weights),
}


def to_stock(model: ElasticPreTrainedModel) -> PreTrainedModel | None:
    """The stock Hugging Face model computing what the extracted ``model`` computes, or ``None``
    when :func:`stock_fit` says its shape has no stock form."""
    fit = stock_fit(model)
    if fit.family is None:
        return None
    task = task_of(model)
    make_config, make_weights = _FAMILY[fit.family]
    config = make_config(model.config)
    cls = STOCK_CLASSES[fit.family][task]
    kwargs: dict[str, Any] = {"add_pooling_layer": False} if task is None else {}
    stock = cls(config, **kwargs)
    weights = make_weights(model.state_dict(), fit.family, task)
    missing, unexpected = stock.load_state_dict(weights, strict=False)
    tied = {k for k in missing if re.search(r"(decoder\.(weight|bias)|^lm_head\.weight)$", k)}
    if unexpected or set(missing) - tied:
        raise RuntimeError(
            f"stock {cls.__name__} did not take the weights: missing {sorted(set(missing) - tied)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    stock.tie_weights()
    ref = next(model.parameters())
    return stock.to(device=ref.device, dtype=ref.dtype).train(model.training)


__all__ = ["STOCK_CLASSES", "StockFit", "stock_fit", "task_of", "to_stock"]
