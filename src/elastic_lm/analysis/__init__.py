"""Representation statistics used to adjust a super-network while it trains (ELM dynamic modules)."""

from elastic_lm.analysis.stats import linear_cka, pairwise_head_cka, pca_components

__all__ = ["linear_cka", "pairwise_head_cka", "pca_components"]
