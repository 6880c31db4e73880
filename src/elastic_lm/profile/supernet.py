"""A super-network to profile: built for a search space, or loaded from a saved folder.

Latency depends only on shapes, so a super-network with random weights profiles as well as a
trained one. ``supernet_from_config`` is where the pipeline's config -> super-network builder plugs in
once it is merged; until then ``elastic-lm profile`` takes a saved super-network folder.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from elastic_lm.architecture import Architecture, LayerArch
from elastic_lm.errors import CheckpointError
from elastic_lm.space import SearchSpace


def space_upper_bounds(space: SearchSpace) -> Architecture:
    """Field-wise maximum over every block type of every layer position (what the weights must hold).

    ``space.largest()`` alone is not enough where a position may hold several block types (ELM: a
    MobileBERT bottleneck is not a field of the BERT block chosen by ``largest``).
    """
    layers = []
    for i in range(space.num_layers):
        widest: dict[str, int] = {}
        blocks = [b for b in space.block_types(i) if b != "identity"]
        for block in blocks:
            layer = space.largest_layer(i, block)
            for f in fields(LayerArch):
                value = getattr(layer, f.name)
                if isinstance(value, int) and not isinstance(value, bool):
                    widest[f.name] = max(widest.get(f.name, 0), value)
                elif isinstance(value, tuple) and f.name in ("head_ids", "ffn_ids"):
                    count = "heads" if f.name == "head_ids" else "ffn"
                    widest[count] = max(widest.get(count, 0), max(value, default=-1) + 1)
        layers.append(LayerArch(block=blocks[0] if blocks else "identity", **widest))
    return Architecture(hidden=space.largest().hidden, layers=tuple(layers))


def build_supernet(space: SearchSpace, vocab_size: int = 30522, task: str = "masked-lm", **shape: Any) -> Any:
    """An ``ElasticFor*`` super-network (random weights, eval mode) covering every member of ``space``.

    ``shape`` goes to ``ElasticConfig`` (``head_dim``, ``norm``, ``positions``...), e.g.
    ``build_supernet(preset("elm"), head_dim=32)`` is MiniLM-L6's shape.
    """
    from elastic_lm.model import ElasticConfig, build_model

    bounds = space_upper_bounds(space)
    block_types = [list(space.block_types(i)) for i in range(space.num_layers)]
    shape.setdefault("hidden_dropout_prob", 0.0)
    shape.setdefault("attention_probs_dropout_prob", 0.0)
    config = ElasticConfig.for_supernet(bounds, block_types, vocab_size, task=task, **shape)
    return build_model(config).eval()


def load_supernet(folder: str | Path) -> Any:
    """A saved ``ElasticFor*`` super-network (``save_pretrained`` folder), in eval mode."""
    from transformers import AutoConfig

    from elastic_lm.model import TASK_MODELS

    path = Path(folder)
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"{path} has no config.json; give a folder written by supernet.save_pretrained(...)"
        )
    config = AutoConfig.from_pretrained(path)
    if getattr(config, "model_type", None) != "elastic-lm":
        raise CheckpointError(
            f"{path}/config.json has model_type={getattr(config, 'model_type', None)!r}; "
            "profile needs an elastic-lm super-network folder (model_type 'elastic-lm')"
        )
    return TASK_MODELS[config.task].from_pretrained(path).eval()


# Fixed (non-searched) shape of the base models the presets are written for; latency depends on them.
BASE_SHAPES: dict[str, dict[str, Any]] = {
    "bert": {"vocab_size": 30522},  # MiniLM-L6 / BERT: head_dim = hidden / heads = 32
    "llama": {  # SmolLM2-135M
        "vocab_size": 49152,
        "head_dim": 64,
        "hidden_act": "silu",
        "norm": "rmsnorm",
        "norm_eps": 1e-5,
        "positions": "rope",
        "type_vocab_size": 0,
        "embedding_norm": False,
        "final_norm": True,
        "use_bias": False,
        "max_position_embeddings": 8192,
    },
}


def supernet_for_space(space: SearchSpace, task: str = "masked-lm", **shape: Any) -> Any:
    """Random-weight super-network at the base model's shape of ``space`` (enough for latency)."""
    base = "llama" if "llama" in space.block_types(0) else "bert"
    merged = {**BASE_SHAPES[base], **shape}
    if base == "llama" and task == "masked-lm":
        task = "causal-lm"
    return build_supernet(space, task=task, **merged)


def supernet_from_config(config: Any) -> tuple[Any, SearchSpace]:
    """The super-network a pipeline config describes, with random weights (latency needs only shapes).

    TODO(lead): once the model stage is merged, load the trained super-network of ``config.run_dir``
    here instead (same shapes, so the predictor stays valid either way).
    """
    from elastic_lm.space import preset

    space = preset(config.space.preset, **config.space.options)
    return supernet_for_space(space, task=config.model.task), space
