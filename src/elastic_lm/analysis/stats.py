"""PCA component counts and linear CKA on activation samples (rows = tokens, columns = features).

Both run in float64 on small samples (a few thousand tokens), so their cost is negligible next to a
training step and their results do not depend on the training dtype.
"""

from __future__ import annotations

import torch


def pca_components(x: torch.Tensor, variance: float = 0.99) -> int:
    """The fewest principal components that explain ``variance`` of the total variance of ``x``.

    A module whose activations need nearly as many components as it has units uses its whole width
    (ELM widens it); one that needs few is over-provisioned. Constant activations need 0 components.
    """
    if not 0.0 < variance <= 1.0:
        raise ValueError(f"variance={variance} must lie in (0, 1]")
    if x.ndim != 2:
        raise ValueError(f"expected a (tokens, features) matrix, got shape {tuple(x.shape)}")
    x = x.detach().double()
    x = x - x.mean(0, keepdim=True)
    eig = torch.linalg.svdvals(x).pow(2)  # proportional to the covariance eigenvalues
    total = float(eig.sum())
    if total <= 0.0:
        return 0
    cumulative = torch.cumsum(eig, 0) / total
    # a tiny tolerance so that variance=1.0 does not count round-off components
    return int(torch.searchsorted(cumulative, torch.tensor(variance - 1e-12, dtype=cumulative.dtype))) + 1


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019) of two representations of the same tokens.

    ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred ``Xc``, ``Yc``: 1 for
    representations equal up to an orthogonal map and an isotropic scale, near 0 for unrelated ones.
    Returns 0 when either representation is constant.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"need (tokens, features) matrices of equal rows, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    xc = x.detach().double() - x.detach().double().mean(0, keepdim=True)
    yc = y.detach().double() - y.detach().double().mean(0, keepdim=True)
    cross = (yc.T @ xc).pow(2).sum()
    norm = torch.linalg.matrix_norm(xc.T @ xc) * torch.linalg.matrix_norm(yc.T @ yc)
    if float(norm) == 0.0:
        return 0.0
    return float(cross / norm)


def pairwise_head_cka(context: torch.Tensor) -> torch.Tensor:
    """CKA of every pair of heads: ``context`` (tokens, heads, head_dim) -> (heads, heads)."""
    heads = context.shape[1]
    out = torch.eye(heads, dtype=torch.float64)
    for a in range(heads):
        for b in range(a + 1, heads):
            out[a, b] = out[b, a] = linear_cka(context[:, a], context[:, b])
    return out
