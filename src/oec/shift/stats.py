"""Per-turn Gaussian fits and the distances between them: Fréchet distance and KL, with bootstrap intervals.

Samples per turn are far fewer than the embedding's 384 dimensions, so each turn's pooled embeddings are first
projected to a few principal dimensions and covariances are shrunk (Ledoit-Wolf); without that the covariances are
singular and KL is infinite. Both estimates are biased upwards at small n, so every comparison sits next to a
baseline of the same population against itself (expert vs expert, on disjoint task halves of the same size), which
should stay near zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance (toward a scaled identity) and the shrinkage; the same numbers as
    scikit-learn's LedoitWolf, about 15x faster on small samples (it runs inside every bootstrap replicate)."""
    n, p = x.shape
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / n
    mu = np.trace(s) / p
    x2 = xc**2
    beta = (np.sum(x2.T @ x2) / n - np.sum(s**2)) / (p * n)
    delta = (np.sum(s**2) - 2 * mu * np.trace(s) + p * mu**2) / p
    shrink = 0.0 if delta == 0 else min(beta, delta) / delta
    return (1 - shrink) * s + shrink * mu * np.eye(p), float(shrink)


def loo_mahalanobis(x: np.ndarray, shrink: float) -> np.ndarray:
    """Each row's Mahalanobis distance under the Gaussian fitted to the *other* rows (leave-one-out), with the
    shrinkage held at SHRINK: one eigendecomposition and a rank-one (Sherman-Morrison) update per row instead of n
    refits. Leave-one-out, because in-sample distances are optimistic and would set the trigger's quantile too low."""
    n, d = x.shape
    u = x - x.mean(axis=0)
    lam, vecs = np.linalg.eigh(u.T @ u / n)
    a, c = (1 - shrink) * n / (n - 1), (1 - shrink) * n / (n - 1) ** 2
    sq = (u**2).sum(axis=1)
    mu = (n / (n - 1) * lam.sum() - n / (n - 1) ** 2 * sq) / d  # trace of each leave-one-out covariance, / d
    w2 = (u @ vecs) ** 2
    q = (w2 / (a * lam[None, :] + shrink * mu[:, None])).sum(axis=1)
    return n / (n - 1) * np.sqrt((q + c * q**2 / (1 - c * q)).clip(min=0))


def has_spread(x: np.ndarray) -> bool:
    """Whether the rows of X differ at all (beyond float noise). A turn where every history of a population is the
    same text (the first action of a scripted policy, `role_only` + `actions_only`) has a zero covariance: no
    Gaussian fits it and KL against it is infinite."""
    return len(x) > 1 and float(np.ptp(x, axis=0).max()) > 1e-6


@dataclass(frozen=True)
class Gaussian:
    mean: np.ndarray
    cov: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Gaussian:
        return cls(x.mean(axis=0), ledoit_wolf(x)[0])


def frechet(a: Gaussian, b: Gaussian) -> float:
    """||mu_a - mu_b||^2 + Tr(Sa + Sb - 2 (Sa Sb)^1/2); the trace of the root from the eigenvalues of Sa Sb."""
    eig = np.linalg.eigvals(a.cov @ b.cov).real.clip(min=0)
    d = a.mean - b.mean
    return float(d @ d + np.trace(a.cov) + np.trace(b.cov) - 2 * np.sqrt(eig).sum())


def kl(a: Gaussian, b: Gaussian) -> float:
    """KL(N_a || N_b) in nats."""
    k = len(a.mean)
    d = b.mean - a.mean
    inv_b_a = np.linalg.solve(b.cov, a.cov)
    _, logdet_a = np.linalg.slogdet(a.cov)
    _, logdet_b = np.linalg.slogdet(b.cov)
    return float(0.5 * (np.trace(inv_b_a) + d @ np.linalg.solve(b.cov, d) - k + logdet_b - logdet_a))


@dataclass(frozen=True)
class PairStats:
    n_a: int
    n_b: int
    dims: int
    fd: float
    fd_lo: float
    fd_hi: float
    kl: float
    kl_lo: float
    kl_hi: float
    kl_rev: float
    kl_rev_lo: float
    kl_rev_hi: float


def project(a: np.ndarray, b: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Both samples in the top principal directions of their union (one subspace for both)."""
    pca = PCA(n_components=dims, svd_solver="full").fit(np.vstack([a, b]))
    return pca.transform(a), pca.transform(b)


def compare(a: np.ndarray, b: np.ndarray, dims: int, replicates: int, rng: np.random.Generator) -> PairStats:
    """FD and KL both ways between A and B (plug-in estimates) with 95% subsampling intervals.

    Intervals come from half-samples drawn without replacement: the spread of the half-sample estimates around
    their median, scaled by sqrt(1/2) to the full sample size, is put around the full-sample estimate. A classic
    bootstrap duplicates rows, which shrinks the covariances' effective sample and inflates KL several-fold, so its
    percentiles would not even contain the estimate. The estimates keep their finite-sample bias (upwards): that is
    what the same-population baseline, computed on equally sized task halves, is for.
    Dimensions are capped at half the smaller sample so that the covariances are estimable at all.
    """
    k = max(1, min(dims, min(len(a), len(b)) // 2, a.shape[1]))
    pa, pb = project(a, b, k)

    def stats(x, y):
        if not (has_spread(x) and has_spread(y)):  # a half-sample of one repeated history: no Gaussian, no KL
            return np.nan, np.nan, np.nan
        ga, gb = Gaussian.fit(x), Gaussian.fit(y)
        return frechet(ga, gb), kl(ga, gb), kl(gb, ga)

    point = np.array(stats(pa, pb))
    lo = hi = point
    if replicates and min(len(pa), len(pb)) >= 6:
        halves = np.array([stats(pa[rng.choice(len(pa), len(pa) // 2, replace=False)],
                                 pb[rng.choice(len(pb), len(pb) // 2, replace=False)]) for _ in range(replicates)])
        if not np.isnan(halves).all():
            spread = (halves - np.nanmedian(halves, axis=0)) * np.sqrt(0.5)
            lo = (point + np.nanpercentile(spread, 2.5, axis=0)).clip(min=0)
            hi = point + np.nanpercentile(spread, 97.5, axis=0)
    return PairStats(len(a), len(b), k, point[0], lo[0], hi[0], point[1], lo[1], hi[1], point[2], lo[2], hi[2])


def mahalanobis(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = np.atleast_2d(x) - mean
    return np.sqrt(np.einsum("ij,jk,ik->i", d, precision, d).clip(min=0))
