"""Load Hugging Face BERT / RoBERTa / MiniLM, GPT-2 and Llama checkpoints into the elastic model.

The elastic model is built at the checkpoint's full size (one block type per layer position) and
every weight is renamed (and, for GPT-2's ``Conv1D``, transposed and split) onto it, so its outputs
equal the original's. Only *models and file formats* of transformers are used, never its scripts.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, PreTrainedModel

from elastic_lm.convert.names import BERT_NAMES, GPT2_NAMES, LLAMA_NAMES, Rename, rename, to_elastic
from elastic_lm.errors import CheckpointError, UserError
from elastic_lm.model import TASK_MODELS, ElasticConfig, ElasticModel, ElasticPreTrainedModel
from elastic_lm.progress import quiet_transformers


class UnsupportedModelError(UserError):
    """The Hugging Face model is of a family or variant the converters do not handle."""


Weights = dict[str, torch.Tensor]

# -- BERT / RoBERTa / MiniLM -----------------------------------------------------------------
BERT_RENAME: Rename = to_elastic(BERT_NAMES, block="bert")
BERT_HEADS: Rename = [
    (r"^cls\.predictions\.transform\.dense\.", "mlm.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "mlm.norm."),
    (r"^cls\.predictions\.bias$", "mlm.bias"),
    (r"^lm_head\.dense\.", "mlm.dense."),  # RoBERTa
    (r"^lm_head\.layer_norm\.", "mlm.norm."),
    (r"^lm_head\.bias$", "mlm.bias"),
    (r"^(bert|roberta)\.pooler\.dense\.", "pooler."),
    (r"^classifier\.dense\.", "pooler."),  # RoBERTa's classification head
    (r"^classifier\.out_proj\.", "classifier."),
    (r"^classifier\.(weight|bias)$", r"classifier.\1"),
]


def _bert_config(c: Any) -> dict[str, Any]:
    roberta = c.model_type == "roberta"
    return {
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_layers": c.num_hidden_layers,
        "block_candidates": [["bert"]] * c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "head_dim": c.hidden_size // c.num_attention_heads,
        "intermediate_size": c.intermediate_size,
        "hidden_act": c.hidden_act,
        "norm_eps": c.layer_norm_eps,
        "max_position_embeddings": c.max_position_embeddings,
        "type_vocab_size": c.type_vocab_size,
        "position_offset": c.pad_token_id + 1 if roberta else 0,
        "pad_token_id": c.pad_token_id,
        "hidden_dropout_prob": c.hidden_dropout_prob,
        "attention_probs_dropout_prob": c.attention_probs_dropout_prob,
    }


# -- GPT-2 -------------------------------------------------------------------------------------
GPT2_RENAME: Rename = to_elastic(GPT2_NAMES, block="gpt2")


def _gpt2_config(c: Any) -> dict[str, Any]:
    if getattr(c, "scale_attn_by_inverse_layer_idx", False) or getattr(c, "reorder_and_upcast_attn", False):
        raise UnsupportedModelError(
            "GPT-2 with scale_attn_by_inverse_layer_idx or reorder_and_upcast_attn is not "
            "supported; "
            "convert a checkpoint with the standard attention"
        )
    return {
        "vocab_size": c.vocab_size,
        "hidden_size": c.n_embd,
        "num_layers": c.n_layer,
        "block_candidates": [["gpt2"]] * c.n_layer,
        "num_attention_heads": c.n_head,
        "head_dim": c.n_embd // c.n_head,
        "intermediate_size": c.n_inner or 4 * c.n_embd,
        "hidden_act": c.activation_function,
        "norm_eps": c.layer_norm_epsilon,
        "max_position_embeddings": c.n_positions,
        "type_vocab_size": 0,
        "embedding_norm": False,
        "final_norm": True,
        "pad_token_id": c.pad_token_id,
        "hidden_dropout_prob": c.resid_pdrop,
        "attention_probs_dropout_prob": c.attn_pdrop,
    }


def _gpt2_weights(name: str, t: torch.Tensor) -> Weights:
    """GPT-2 stores linear weights as (in, out) ``Conv1D`` and fuses q, k, v."""
    m = re.match(r"^h\.(\d+)\.attn\.c_attn\.(weight|bias)$", name)
    if m:
        i, kind = m.groups()
        parts = (t.t() if kind == "weight" else t).chunk(3, dim=0)
        return {f"layers.{i}.gpt2.attention.{p}.{kind}": x for p, x in zip("qkv", parts, strict=True)}
    if re.match(r"^h\.\d+\.(attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$", name):
        t = t.t()
    return {_rename(name, GPT2_RENAME): t}


# -- Llama ---------------------------------------------------------------------------------------
LLAMA_RENAME: Rename = to_elastic(LLAMA_NAMES, block="llama")


def _llama_config(c: Any) -> dict[str, Any]:
    rope = dict(getattr(c, "rope_parameters", None) or {})
    theta = rope.get("rope_theta", getattr(c, "rope_theta", 10000.0))
    if rope.get("rope_type", "default") != "default":
        raise UnsupportedModelError(
            f"Llama rope_type={rope.get('rope_type')!r} is not supported; only 'default' RoPE is"
        )
    if bool(c.attention_bias) != bool(c.mlp_bias):
        raise UnsupportedModelError(
            f"Llama attention_bias={c.attention_bias} with mlp_bias={c.mlp_bias} is not supported; "
            "both must be equal"
        )
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return {
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_layers": c.num_hidden_layers,
        "block_candidates": [["llama"]] * c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads or c.num_attention_heads,
        "head_dim": head_dim,
        "intermediate_size": c.intermediate_size,
        "hidden_act": c.hidden_act,
        "norm": "rmsnorm",
        "norm_eps": c.rms_norm_eps,
        "positions": "rope",
        "rope_theta": float(theta),
        "max_position_embeddings": c.max_position_embeddings,
        "type_vocab_size": 0,
        "embedding_norm": False,
        "final_norm": True,
        "use_bias": bool(c.attention_bias),
        "pad_token_id": c.pad_token_id,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": c.attention_dropout,
    }


def _rename(name: str, table: Rename) -> str:
    new = rename(name, table)
    if new is None:
        raise UnsupportedModelError(f"weight {name!r} has no place in the elastic model")
    return new


FAMILIES: dict[str, tuple[Callable[[Any], dict[str, Any]], Callable[[str, torch.Tensor], Weights]]] = {
    "bert": (_bert_config, lambda n, t: {_rename(n, BERT_RENAME): t}),
    "roberta": (_bert_config, lambda n, t: {_rename(n, BERT_RENAME): t}),
    "gpt2": (_gpt2_config, _gpt2_weights),
    "llama": (_llama_config, lambda n, t: {_rename(n, LLAMA_RENAME): t}),
}
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(FAMILIES)

# Which HF class names carry which task head.
_TASK_SUFFIXES = {
    "ForMaskedLM": "masked-lm",
    "ForCausalLM": "causal-lm",
    "LMHeadModel": "causal-lm",
    "ForSequenceClassification": "sequence-classification",
}
_AUTO = {
    None: transformers.AutoModel,
    "masked-lm": transformers.AutoModelForMaskedLM,
    "causal-lm": transformers.AutoModelForCausalLM,
    "sequence-classification": transformers.AutoModelForSequenceClassification,
}


def _task_of(class_name: str) -> str | None:
    for suffix, task in _TASK_SUFFIXES.items():
        if class_name.endswith(suffix):
            return task
    return None


def _load(path: Path, task: str | None, gguf_file: str | None) -> tuple[PreTrainedModel, set[str]]:
    """The model and the names of the weights the checkpoint lacks.

    transformers draws those from the global RNG in an order that follows string hashing, so they
    differ run to run; :func:`from_hf` initialises them itself, from its seed.
    """
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        config = AutoConfig.from_pretrained(path, **extra)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"model_or_path={str(path)!r} is not a readable model folder: {err}") from err
    if config.model_type not in FAMILIES:
        raise UnsupportedModelError(
            f"model_type={config.model_type!r} is not supported; "
            f"convert one of {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if task is None:
        task = next((t for a in config.architectures or [] if (t := _task_of(a))), None)
    with quiet_transformers():  # its report lists the weights we draw from the seed below
        model, info = _AUTO[task].from_pretrained(path, output_loading_info=True, **extra)
    return model, set(info.get("missing_keys") or ())


def from_hf(
    model_or_path: PreTrainedModel | str | Path,
    task: str | None = None,
    gguf_file: str | None = None,
    *,
    space: Any = None,
    seed: int = 0,
    **config_overrides: Any,
) -> ElasticPreTrainedModel:
    """An elastic model at the full size of a Hugging Face model, computing the same function.

    ``task`` picks the elastic class (``masked-lm`` / ``causal-lm`` / ``sequence-classification``);
    ``None`` keeps the checkpoint's head, or gives the bare ``ElasticModel`` for a bare encoder. A
    head the checkpoint lacks is freshly initialised, as ``from_pretrained`` does. ``config_overrides``
    (dropout...) go into the ``ElasticConfig``. ``gguf_file`` names a GGUF file inside the folder
    (SmolLM2), de-quantised to float32 (needs ``gguf`` and ``accelerate``).

    ``space`` (a ``SearchSpace``) builds its super-network instead (``ElasticConfig.from_space``,
    the fixed choices taken from the checkpoint): the checkpoint's blocks fill the positions that
    can hold its block type, taking the leading channels / heads / units / layers where the space
    is smaller; every other candidate (MobileBERT, sepconv...) keeps the model's own
    initialisation. ``seed`` draws every weight the checkpoint does not supply (other candidates, a
    fresh head), so conversions are reproducible; the global RNG is left untouched.
    """
    lacking: set[str] = set()  # weights the checkpoint does not have: drawn from ``seed`` below
    if isinstance(model_or_path, str | Path):
        hf, lacking = _load(Path(model_or_path), task, gguf_file)
    elif isinstance(model_or_path, PreTrainedModel):
        hf = model_or_path
    else:
        raise UserError(
            f"model_or_path={type(model_or_path).__name__} is neither a folder nor a transformers "
            "PreTrainedModel; pass one of those"
        )
    c = hf.config
    if c.model_type not in FAMILIES:
        raise UnsupportedModelError(
            f"model_type={c.model_type!r} ({type(hf).__name__}) is not supported; "
            f"convert one of {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    source_task = _task_of(type(hf).__name__)
    if source_task is None and type(hf).__name__ not in (
        "BertModel",
        "RobertaModel",
        "GPT2Model",
        "LlamaModel",
    ):
        raise UnsupportedModelError(
            f"{type(hf).__name__} is not supported; use the bare model or its MaskedLM / "
            "CausalLM / "
            "SequenceClassification class"
        )
    task = task if task is not None else source_task
    make_config, convert = FAMILIES[c.model_type]
    fields = make_config(c)
    fields["tie_word_embeddings"] = bool(getattr(c, "tie_word_embeddings", True))
    for special in ("bos_token_id", "eos_token_id"):  # generation stops where the source's does
        fields.setdefault(special, getattr(c, special, None))
    fields["num_labels"] = c.num_labels
    fields["id2label"] = dict(c.id2label) if c.id2label else None
    fields["task"] = task or ("causal-lm" if c.model_type in ("gpt2", "llama") else "masked-lm")
    source_block = fields["block_candidates"][0][0]
    if space is None:
        fields.update(config_overrides)
        config = ElasticConfig(**fields)
    else:
        config = _supernet_config(space, fields, config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: ElasticPreTrainedModel = ElasticModel(config) if task is None else TASK_MODELS[task](config)

    prefix = "" if task is None else "model."
    base = hf.base_model_prefix
    bare = not isinstance(getattr(hf, base, None), PreTrainedModel)  # BertModel, GPT2Model...
    weights: Weights = {}
    for name, tensor in hf.state_dict().items():
        if re.search(r"(\.attn\.(bias|masked_bias)|position_ids|rotary_emb\.inv_freq)$", name):
            continue  # buffers the elastic model recomputes
        if bare or name.startswith(f"{base}."):
            inner = name if bare else name[len(base) + 1 :]
            if inner.startswith("pooler."):
                if task == "sequence-classification":
                    weights[_rename(f"{base}.{inner}", BERT_HEADS)] = tensor
                continue
            for new, t in convert(inner, tensor).items():
                weights[prefix + new] = t
        elif task is not None and task == source_task and name not in lacking:
            weights.update(_head_weights(c.model_type, name, tensor, config))
    own = model.state_dict()
    if space is not None:
        weights = _fit(weights, own, prefix)
    # A head the checkpoint lacks may be missing, and so may the candidates of a space's other
    # block types; nothing else of the backbone may be.
    fresh = set(own) - set(weights)
    if space is not None:
        other_block = re.compile(rf"^{re.escape(prefix)}layers\.\d+\.(?!{source_block}\.)")
        fresh = {k for k in fresh if not other_block.match(k)}
    missing = sorted(fresh)
    unexpected = sorted(set(weights) - set(own))
    fresh_head = task != source_task or any(not k.startswith(f"{base}.") for k in lacking)
    backbone_missing = [k for k in missing if k.startswith(prefix)]
    if unexpected or backbone_missing or (missing and not fresh_head):
        raise CheckpointError(
            f"{type(hf).__name__} did not map onto the elastic model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    model.load_state_dict(weights, strict=False)
    source_generation = getattr(hf, "generation_config", None)
    if source_generation is not None and model.can_generate():  # sampling defaults travel with it
        model.generation_config = copy.deepcopy(source_generation)
    return model.eval() if not hf.training else model


# Fields a search space sets; the checkpoint's values only bound them.
_SPACE_SIZES = (
    "hidden_size",
    "num_layers",
    "block_candidates",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "bottleneck_size",
    "ffn_stack",
    "conv_kernel_size",
)


def _supernet_config(space: Any, fields: dict[str, Any], overrides: dict[str, Any]) -> ElasticConfig:
    """The space's super-network with the checkpoint's fixed choices; fails if it cannot be filled."""
    clash = sorted(set(overrides) & set(_SPACE_SIZES))
    if clash:
        raise UserError(
            f"from_hf: {clash[0]}= conflicts with space=; the space sets the sizes, so drop it "
            "(or change the space)"
        )
    block = fields["block_candidates"][0][0]
    shape = {k: v for k, v in fields.items() if k not in (*_SPACE_SIZES, "vocab_size", "task")}
    shape.update(overrides)
    config = ElasticConfig.from_space(space, fields["vocab_size"], fields["task"], **shape)
    if not any(block in cands for cands in config.block_candidates):
        raise UserError(
            f"space has no {block!r} block at any layer position, so the checkpoint's weights have "
            f"no place; use a space whose block choices include {block!r}"
        )
    heads, kv = (
        fields["num_attention_heads"],
        fields.get("num_key_value_heads") or fields["num_attention_heads"],
    )
    bounds = [
        ("num_layers", "layer positions", fields["num_layers"]),
        ("hidden_size", "hidden", fields["hidden_size"]),
        ("num_attention_heads", "heads", heads),
        ("num_key_value_heads", "kv_heads", kv),
        ("intermediate_size", "ffn", fields["intermediate_size"]),
    ]
    for field, dim, source in bounds:
        if getattr(config, field) > source:
            raise UserError(
                f"space needs {field}={getattr(config, field)} (its largest {dim}) but the "
                f"checkpoint has {source}; use a space with {dim} <= {source}"
            )
    if config.head_dim != fields["head_dim"]:
        raise UserError(
            f"head_dim={config.head_dim} differs from the checkpoint's {fields['head_dim']}; heads "
            f"are taken whole, so keep head_dim={fields['head_dim']}"
        )
    if config.num_attention_heads * kv != config.num_key_value_heads * heads:
        raise UserError(
            f"space has {config.num_attention_heads} heads on {config.num_key_value_heads} kv_heads "
            f"but the checkpoint groups {heads // kv} heads per KV head; keep that ratio"
        )
    return config


def _fit(weights: Weights, own: Weights, prefix: str) -> Weights:
    """The checkpoint's tensors cut to the super-network: leading slices, first layers, and only
    positions that hold the checkpoint's block type (the others stay freshly initialised)."""
    layer = re.compile(rf"^{re.escape(prefix)}layers\.(\d+)\.")
    fitted: Weights = {}
    for name, tensor in weights.items():
        if layer.match(name) and name not in own:
            continue  # a layer past the space's depth, or a position without this block type
        target = own.get(name)
        if target is not None and target.shape != tensor.shape:
            if target.dim() != tensor.dim() or any(
                a > b for a, b in zip(target.shape, tensor.shape, strict=True)
            ):
                raise CheckpointError(
                    f"{name}: the super-network needs {tuple(target.shape)} but the checkpoint "
                    f"has {tuple(tensor.shape)}; use a space no wider than the checkpoint"
                )
            for dim, size in enumerate(target.shape):
                tensor = tensor.narrow(dim, 0, size)
        fitted[name] = tensor
    return fitted


def _head_weights(model_type: str, name: str, t: torch.Tensor, config: ElasticConfig) -> Weights:
    """Task-head weights; decoders tied to the word embeddings carry nothing of their own."""
    if model_type in ("gpt2", "llama"):
        if name == "lm_head.weight":
            return {} if config.tie_word_embeddings else {"lm_head.weight": t}
        raise UnsupportedModelError(f"weight {name!r} has no place in the elastic model")
    if not config.tie_word_embeddings and config.task == "masked-lm":
        raise UnsupportedModelError(
            "a masked-LM whose decoder is not tied to the word embeddings is not supported; "
            "use tie_word_embeddings=True"
        )
    if re.match(r"^(cls\.predictions|lm_head)\.decoder\.(weight|bias)$", name):
        return {}  # tied to the word embeddings / the same tensor as the head bias
    return {_rename(name, BERT_HEADS): t}
