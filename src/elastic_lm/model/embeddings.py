"""Input embeddings (word + learned positions + token types + norm) and rotary position tables."""

from __future__ import annotations

import torch
from torch import nn

from elastic_lm.model.config import ElasticConfig
from elastic_lm.model.primitives import ElasticEmbedding, make_norm


class ElasticEmbeddings(nn.Module):
    """BERT-like: word + learned position + token type, then norm; Llama-like (RoPE): word only."""

    def __init__(self, config: ElasticConfig, hidden: int) -> None:
        super().__init__()
        self.word = ElasticEmbedding(config.vocab_size, hidden, padding_idx=None)
        self.position = (
            ElasticEmbedding(config.max_position_embeddings, hidden)
            if config.positions == "learned"
            else None
        )
        self.token_type = (
            ElasticEmbedding(config.type_vocab_size, hidden) if config.type_vocab_size > 0 else None
        )
        self.norm = make_norm(config.norm, hidden, config.norm_eps) if config.embedding_norm else None
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pad_token_id = config.pad_token_id
        self.position_offset = config.position_offset

    def select(self, width: int | None) -> None:
        for emb in (self.word, self.position, self.token_type):
            if emb is not None:
                emb.select(width)

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """0..T-1, or RoBERTa's numbering that skips padding and starts after ``pad_token_id``."""
        T = input_ids.shape[1]
        if self.position_offset and self.pad_token_id is not None:
            keep = input_ids.ne(self.pad_token_id).long()
            return torch.cumsum(keep, dim=1) * keep + self.pad_token_id
        return torch.arange(T, device=input_ids.device).unsqueeze(0)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.word(input_ids)
        if self.position is not None:
            if position_ids is None:
                position_ids = self.position_ids(input_ids)
            x = x + self.position(position_ids)
        if self.token_type is not None:
            if token_type_ids is None:
                x = x + self.token_type.active_weight[0]
            else:
                x = x + self.token_type(token_type_ids)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


class RotaryEmbedding(nn.Module):
    """cos / sin tables for RoPE in Hugging Face Llama's rotate-half layout."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self.register_buffer("inv_freq", self.compute_inv_freq(), persistent=False)

    def compute_inv_freq(self) -> torch.Tensor:
        """Recomputed on load: the buffer is not saved (``from_pretrained`` builds on meta)."""
        steps = torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() / self.head_dim
        return 1.0 / (self.theta**steps)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.float()
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)
