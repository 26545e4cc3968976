"""A Gaussian-mixture pose prior over the body joints' axis-angle, as in SMPLify.

The 23 non-root SMPL joints' axis-angle values (69 numbers, joint 1 first) are modelled by
a mixture of full-covariance Gaussians. ``fit_gmm`` is a plain numpy EM (k-means++ seeds,
a few Lloyd steps, then EM with a ridge added to every covariance); ``GMMPrior`` is the
torch side used by the optimiser.

As SMPLify does, the optimiser's penalty is the *min over components* of the weighted
negative log-density, ``min_k [ 0.5 (x-mu_k)^T P_k (x-mu_k) - log w_k + 0.5 log det S_k ]``
(plus the constant 0.5 D log 2 pi so it is a true -log of the best component): a
quadratic bowl per component, differentiable (the gradient flows through the winning
component). ``log_likelihood`` gives the exact mixture log-density for evaluation.

The shipped prior is ``data/pose_prior_gmm.npz`` (built by ``tools/fit_pose_prior.py``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from scipy.linalg import solve_triangular

from .errors import ModelFileError

DEFAULT_PRIOR_PATH = Path(__file__).resolve().parent / "data" / "pose_prior_gmm.npz"
NUM_BODY_DIMS = 69

# --------------------------------------------------------------------------- numpy EM


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each new centre drawn with probability ~ squared distance."""
    n = x.shape[0]
    centres = [x[rng.integers(n)]]
    d2 = ((x - centres[0]) ** 2).sum(-1)
    for _ in range(1, k):
        total = d2.sum()
        idx = rng.integers(n) if total <= 0 else rng.choice(n, p=d2 / total)
        centres.append(x[idx])
        d2 = np.minimum(d2, ((x - x[idx]) ** 2).sum(-1))
    return np.stack(centres)


def _sq_dists(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    return (x * x).sum(-1)[:, None] - 2 * x @ c.T + (c * c).sum(-1)[None]


def _component_log_density(x: np.ndarray, means: np.ndarray, covars: np.ndarray) -> np.ndarray:
    """(N, K) log N(x | mu_k, S_k), via Cholesky factors."""
    n, d = x.shape
    out = np.empty((n, means.shape[0]))
    for k in range(means.shape[0]):  # K is small (8); each step is a batched solve over N
        chol = np.linalg.cholesky(covars[k])
        z = solve_triangular(chol, (x - means[k]).T, lower=True, check_finite=False)  # (D, N)
        logdet = 2 * np.log(np.diag(chol)).sum()
        out[:, k] = -0.5 * ((z * z).sum(0) + logdet + d * math.log(2 * math.pi))
    return out


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis, keepdims=True))).squeeze(axis)


def gmm_log_likelihood(samples, gmm: dict) -> np.ndarray:
    """(N,) exact log-density of each sample under the mixture."""
    x = np.asarray(samples, dtype=np.float64)
    lp = _component_log_density(
        x, np.asarray(gmm["means"], np.float64), np.asarray(gmm["covars"], np.float64)
    )
    return _logsumexp(lp + np.log(np.asarray(gmm["weights"], np.float64))[None], 1)


def fit_gmm(
    samples,
    n_components: int = 8,
    seed: int = 0,
    reg_covar: float = 1e-4,
    max_iter: int = 300,
    tol: float = 1e-6,
    kmeans_iters: int = 10,
) -> dict:
    """Fit a full-covariance Gaussian mixture to ``samples`` (N, D) by EM.

    Returns ``{"means": (K, D), "covars": (K, D, D), "weights": (K,), "log_likelihood":
    mean train log-density (float), "iterations": int}``; the arrays are float64.
    ``reg_covar`` is added to every covariance's diagonal (keeps near-constant dimensions
    invertible); EM stops when the mean log-likelihood gains less than ``tol``.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"samples must be (N, D), got {x.shape}")
    n, d = x.shape
    k = int(n_components)
    if n < k:
        raise ValueError(f"need at least {k} samples for {k} components, got {n}")
    rng = np.random.default_rng(seed)
    eye = np.eye(d)

    # k-means++ seeds refined by a few Lloyd steps give hard labels for the first M-step.
    centres = _kmeans_pp(x, k, rng)
    for _ in range(kmeans_iters):
        labels = _sq_dists(x, centres).argmin(1)
        for j in range(k):
            members = x[labels == j]
            centres[j] = members.mean(0) if len(members) else x[rng.integers(n)]
    resp = np.zeros((n, k))
    resp[np.arange(n), _sq_dists(x, centres).argmin(1)] = 1.0

    def m_step(r):
        nk = r.sum(0) + 1e-10
        w = nk / n
        mu = (r.T @ x) / nk[:, None]
        cov = np.empty((k, d, d))
        for j in range(k):
            s = np.sqrt(r[:, j, None]) * (x - mu[j])  # s^T s is a symmetric rank-k update
            cov[j] = s.T @ s / nk[j] + reg_covar * eye
        return w, mu, cov

    weights, means, covars = m_step(resp)
    prev = -np.inf
    it = 0
    ll = prev
    for it in range(1, max_iter + 1):  # noqa: B007 (the count is read after the loop)
        lp = _component_log_density(x, means, covars) + np.log(weights)[None]
        norm = _logsumexp(lp, 1)
        ll = float(norm.mean())
        resp = np.exp(lp - norm[:, None])
        weights, means, covars = m_step(resp)
        if abs(ll - prev) < tol * max(1.0, abs(ll)):
            break
        prev = ll
    order = np.argsort(-weights)  # heaviest component first, for reproducible files
    return {
        "means": means[order],
        "covars": covars[order],
        "weights": weights[order],
        "log_likelihood": ll,
        "iterations": it,
    }


def save_gmm(path, gmm: dict, **meta) -> None:
    """Write the mixture as a small compressed .npz (float32 arrays; ``meta`` as strings)."""
    arrays = {key: np.asarray(gmm[key], dtype=np.float32) for key in ("means", "covars", "weights")}
    extra = {f"meta_{k}": np.asarray(str(v)) for k, v in meta.items()}
    np.savez_compressed(path, **arrays, **extra)


def load_gmm(path=None) -> dict:
    """Read a mixture saved by ``save_gmm`` (default: the shipped prior)."""
    p = Path(path) if path else DEFAULT_PRIOR_PATH
    if not p.is_file():
        raise ModelFileError(
            f"Pose prior file not found: {p}. Rebuild it with tools/fit_pose_prior.py."
        )
    try:
        with np.load(p, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{p.name}: not a readable pose prior ({exc}).") from None
    for key in ("means", "covars", "weights"):
        if key not in out:
            raise ModelFileError(f"{p.name}: missing '{key}'; not a pose prior file.")
    k, d = out["means"].shape
    if out["covars"].shape != (k, d, d) or out["weights"].shape != (k,):
        raise ModelFileError(f"{p.name}: inconsistent mixture arrays.")
    return out


# --------------------------------------------------------------------------- torch prior


class GMMPrior(torch.nn.Module):
    """Per-frame negative log-likelihood of body poses under a Gaussian mixture.

    ``forward(pose)`` takes (..., 69) or (..., 23, 3) axis-angle of joints 1..23 and returns
    (...,) the SMPLify max-mixture NLL (min over components); ``log_likelihood`` is the
    exact mixture log-density.
    """

    # Buffers (register_buffer below), declared so that type checkers see tensors.
    means: torch.Tensor
    prec_chol: torch.Tensor
    const: torch.Tensor

    def __init__(self, gmm: dict | str | Path | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        if gmm is None or isinstance(gmm, (str, Path)):
            gmm = load_gmm(gmm)
        means = np.asarray(gmm["means"], np.float64)
        covars = np.asarray(gmm["covars"], np.float64)
        weights = np.asarray(gmm["weights"], np.float64)
        k, d = means.shape
        # Precision Cholesky factors L_k with P_k = L_k L_k^T, so the Mahalanobis term is
        # |L_k^T (x - mu_k)|^2: one batched matmul per evaluation.
        prec = np.linalg.inv(covars)
        prec = 0.5 * (prec + prec.transpose(0, 2, 1))
        chol = np.linalg.cholesky(prec)
        logdet = np.linalg.slogdet(covars)[1]
        const = (
            -np.log(np.maximum(weights, 1e-300)) + 0.5 * logdet + 0.5 * d * math.log(2 * math.pi)
        )
        self.num_components, self.dim = k, d
        self.register_buffer("means", torch.tensor(means, dtype=dtype))
        self.register_buffer("prec_chol", torch.tensor(chol, dtype=dtype))
        self.register_buffer("const", torch.tensor(const, dtype=dtype))

    def component_nll(self, pose: torch.Tensor) -> torch.Tensor:
        """(..., K) -log(w_k N(x | mu_k, S_k)) for each component."""
        x = pose.reshape(pose.shape[:-2] + (-1,)) if pose.shape[-2:] == (23, 3) else pose
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"pose prior expects (..., {self.dim}) axis-angle, got {tuple(pose.shape)}"
            )
        diff = x[..., None, :] - self.means  # (..., K, D)
        z = torch.einsum("...kd,kde->...ke", diff, self.prec_chol)
        return 0.5 * (z * z).sum(-1) + self.const

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        return self.component_nll(pose).min(-1).values

    def log_likelihood(self, pose: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(-self.component_nll(pose), -1)


_DEFAULT: dict = {}


def load_default_prior(device=None, dtype: torch.dtype = torch.float32) -> GMMPrior | None:
    """The shipped prior on ``device`` (cached per device/dtype), or None when its file is absent."""
    if not DEFAULT_PRIOR_PATH.is_file():
        return None
    key = (str(torch.device(device or "cpu")), dtype)
    if key not in _DEFAULT:
        _DEFAULT[key] = GMMPrior(DEFAULT_PRIOR_PATH, dtype=dtype).to(torch.device(device or "cpu"))
    return _DEFAULT[key]
