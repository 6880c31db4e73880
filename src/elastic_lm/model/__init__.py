"""The elastic transformer: one super-network, sub-networks selected by ``Architecture``.

Importing this package registers ``model_type="elastic-lm"`` with the transformers Auto classes, so
``AutoModel.from_pretrained(folder)`` loads a saved elastic model without ``trust_remote_code``.
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
)

from elastic_lm.model.config import TASKS, ElasticConfig
from elastic_lm.model.heads import (
    ElasticForCausalLM,
    ElasticForMaskedLM,
    ElasticForSequenceClassification,
)
from elastic_lm.model.modeling import ElasticModel, ElasticPreTrainedModel

TASK_MODELS: dict[str, type[ElasticPreTrainedModel]] = {
    "masked-lm": ElasticForMaskedLM,
    "causal-lm": ElasticForCausalLM,
    "sequence-classification": ElasticForSequenceClassification,
}


def build_model(config: ElasticConfig) -> ElasticPreTrainedModel:
    """The task model ``config.task`` names."""
    return TASK_MODELS[config.task](config)


def _register() -> None:
    AutoConfig.register(ElasticConfig.model_type, ElasticConfig, exist_ok=True)
    AutoModel.register(ElasticConfig, ElasticModel, exist_ok=True)
    AutoModelForMaskedLM.register(ElasticConfig, ElasticForMaskedLM, exist_ok=True)
    AutoModelForCausalLM.register(ElasticConfig, ElasticForCausalLM, exist_ok=True)
    AutoModelForSequenceClassification.register(
        ElasticConfig, ElasticForSequenceClassification, exist_ok=True
    )


_register()

__all__ = [
    "TASKS",
    "TASK_MODELS",
    "ElasticConfig",
    "ElasticForCausalLM",
    "ElasticForMaskedLM",
    "ElasticForSequenceClassification",
    "ElasticModel",
    "ElasticPreTrainedModel",
    "build_model",
]
