"""Task models: masked LM, causal LM and sequence classification on the elastic backbone.

Heads run at the architecture's global width (``Architecture.hidden``); every head weight is elastic
in its input width, so a narrower sub-network uses the first ``hidden`` columns.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_outputs import (
    CausalLMOutputWithPast,
    MaskedLMOutput,
    SequenceClassifierOutput,
)

from elastic_lm.model.config import ElasticConfig
from elastic_lm.model.modeling import ElasticModel, ElasticPreTrainedModel
from elastic_lm.model.primitives import ElasticLinear, make_norm, make_selection


class MaskedLMHead(nn.Module):
    """BERT's MLM head: dense + act + norm, then a decoder tied to the word embeddings (+ bias)."""

    zero_bias_init = True

    def __init__(self, config: ElasticConfig) -> None:
        super().__init__()
        self.hidden = config.hidden_size
        self.dense = ElasticLinear(config.hidden_size, config.hidden_size, config.use_bias)
        self.act = ACT2FN[config.hidden_act]
        self.norm = make_norm(config.norm, config.hidden_size, config.norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def select(self, width: int) -> None:
        sel = make_selection(width, self.hidden)
        self.dense.select(sel, sel)

    def forward(self, x: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(self.act(self.dense(x))), decoder, self.bias)


def _outputs(out: Any) -> dict[str, Any]:
    return {"hidden_states": out.hidden_states, "attentions": out.attentions}


class ElasticForMaskedLM(ElasticPreTrainedModel):
    # the training loop may ask for logits at the masked positions only (``logits_positions``)
    supports_logits_positions = True

    def __init__(self, config: ElasticConfig) -> None:
        super().__init__(config)
        self.model = ElasticModel(config)
        self.mlm = MaskedLMHead(config)
        self.post_init()

    def _select_head(self, width: int) -> None:
        self.mlm.select(width)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        logits_positions: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> MaskedLMOutput:
        """``labels``: token ids at masked positions, -100 elsewhere.

        ``logits_positions`` (bool [B, T]): compute the vocabulary projection only there and return
        ``logits`` of shape [N, V] in row-major order of those positions; at MiniLM size the
        projection over every position is about half of a training step.
        """
        out = self.model(input_ids, attention_mask, token_type_ids, **kwargs)
        hidden = out.last_hidden_state
        if logits_positions is not None:
            hidden = hidden[logits_positions.to(hidden.device, torch.bool)]
        logits = self.mlm(hidden, self.model.embeddings.word.active_weight)
        loss = None
        if labels is not None:
            if logits_positions is not None:
                labels = labels[logits_positions.to(labels.device, torch.bool)]
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.reshape(-1))
        return MaskedLMOutput(loss=loss, logits=logits, **_outputs(out))


class ElasticForCausalLM(ElasticPreTrainedModel, GenerationMixin):
    """LM head tied to the word embeddings (``tie_word_embeddings``) or its own ``lm_head``.

    A transformers ``GenerationMixin``: ``generate()`` runs the selected sub-network with a KV cache
    (``DynamicCache``), so each new token costs one single-token pass, as in a stock Llama.
    """

    def __init__(self, config: ElasticConfig) -> None:
        super().__init__(config)
        self.model = ElasticModel(config)
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else ElasticLinear(config.hidden_size, config.vocab_size, bias=False)
        )
        self.post_init()

    def _select_head(self, width: int) -> None:
        if self.lm_head is not None:
            self.lm_head.select(None, make_selection(width, self.config.hidden_size))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """``labels`` are the input ids (-100 to ignore); they are shifted inside.

        ``logits_to_keep`` > 0 projects only the last that many positions onto the vocabulary
        (``generate`` asks for 1); ``past_key_values`` / ``use_cache`` as in :class:`ElasticModel`.
        """
        out = self.model(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            **kwargs,
        )
        h = out.last_hidden_state
        if logits_to_keep:
            h = h[:, -logits_to_keep:]
        if self.lm_head is None:
            logits = F.linear(h, self.model.embeddings.word.active_weight)
        else:
            logits = self.lm_head(h)
        loss = None
        if labels is not None:
            shift = logits[:, :-1].reshape(-1, logits.shape[-1])
            loss = F.cross_entropy(shift, labels[:, 1:].reshape(-1))
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, past_key_values=out.past_key_values, **_outputs(out)
        )


class ElasticForSequenceClassification(ElasticPreTrainedModel):
    """Pooler (dense + tanh on the first, or last real, token) and a linear classifier.

    Cross-entropy for ``num_labels > 1``, mean squared error for regression (``num_labels == 1``).
    """

    def __init__(self, config: ElasticConfig) -> None:
        super().__init__(config)
        self.model = ElasticModel(config)
        self.pooler = ElasticLinear(config.hidden_size, config.hidden_size, config.use_bias)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = ElasticLinear(config.hidden_size, config.num_labels)
        self.post_init()

    def _select_head(self, width: int) -> None:
        sel = make_selection(width, self.config.hidden_size)
        self.pooler.select(sel, sel)
        self.classifier.select(None, sel)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        out = self.model(input_ids, attention_mask, token_type_ids, **kwargs)
        h = out.last_hidden_state
        if self.config.pooling == "last":
            if attention_mask is None:
                pooled = h[:, -1]
            else:
                last = attention_mask.long().sum(1) - 1
                pooled = h[torch.arange(h.shape[0], device=h.device), last]
        else:
            pooled = h[:, 0]
        pooled = torch.tanh(self.pooler(pooled))
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits, **_outputs(out))
