"""A super-network to profile: built for a search space, or loaded from a saved folder.

Latency depends only on shapes, so a super-network with random weights profiles as well as a
trained one. ``supernet_from_config`` is where the pipeline's config -> super-network builder plugs in
once it is merged; until then ``elastic-lm profile`` takes a saved super-network folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from elastic_lm.errors import UserError
from elastic_lm.space import SearchSpace


def build_supernet(space: SearchSpace, vocab_size: int = 30522, task: str = "masked-lm", **shape: Any) -> Any:
    """An ``ElasticFor*`` super-network (random weights, eval mode) covering every member of ``space``.

    ``shape`` goes to ``ElasticConfig`` (``head_dim``, ``norm``, ``positions``...), e.g.
    ``build_supernet(preset("elm"), head_dim=32)`` is MiniLM-L6's shape.
    """
    from elastic_lm.model import ElasticConfig, build_model

    shape.setdefault("hidden_dropout_prob", 0.0)
    shape.setdefault("attention_probs_dropout_prob", 0.0)
    config = ElasticConfig.from_space(space, vocab_size, task=task, **shape)
    return build_model(config).eval()


def load_supernet(folder: str | Path) -> tuple[Any, SearchSpace | None]:
    """A saved super-network folder (what training writes) and its ``space.json`` when present."""
    from elastic_lm.export.supernet import load_supernet as load_saved

    saved = load_saved(folder)
    return saved.model.eval(), saved.space


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


def supernet_from_config(config: Any) -> tuple[Any, SearchSpace, str]:
    """The super-network a pipeline config describes, its space, and a note on where it came from.

    Else the source model converted in (``train.build.model_from_config``) where that works; otherwise
    (``model.source: scratch``, or blocks the converter cannot fill yet) random weights at the
    space's base shape, which profiles the same: latency depends on shapes, not weights.
    A trained super-network in ``RUN_DIR/train/supernet`` comes first.
    """
    from elastic_lm.export.pareto import SUPERNET_SUBDIR
    from elastic_lm.train.build import model_from_config, space_from_config

    trained = Path(config.run_dir) / SUPERNET_SUBDIR
    if trained.is_dir():
        model, saved_space = load_supernet(trained)
        return model, saved_space or space_from_config(config), f"trained super-network {trained}"
    space = space_from_config(config)
    if config.model.source != "scratch":
        try:
            return model_from_config(config, space).eval(), space, f"weights of {config.model.source}"
        except UserError as exc:
            note = f"random weights at the space's shape ({exc})"
    else:
        note = "random weights (model.source: scratch)"
    return supernet_for_space(space, task=config.model.task), space, note
