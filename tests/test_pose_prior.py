import math

import numpy as np
import pytest
import torch

from lsmplify_blender.core.errors import ModelFileError
from lsmplify_blender.core.pose_prior import (
    DEFAULT_PRIOR_PATH,
    GMMPrior,
    fit_gmm,
    gmm_log_likelihood,
    load_default_prior,
    load_gmm,
    save_gmm,
)


def _two_component_samples(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    m1, m2 = np.array([2.0, 0.0, 1.0]), np.array([-2.0, 1.0, -1.0])
    a = rng.normal(size=(3, 3)) * 0.3
    c1 = a @ a.T + 0.05 * np.eye(3)
    c2 = np.diag([0.2, 0.1, 0.3])
    n1 = int(0.7 * n)
    x = np.concatenate(
        [rng.multivariate_normal(m1, c1, n1), rng.multivariate_normal(m2, c2, n - n1)]
    )
    return rng.permutation(x), (m1, m2), (c1, c2), (0.7, 0.3)


def test_em_recovers_a_known_mixture():
    x, means, covs, weights = _two_component_samples()
    gmm = fit_gmm(x, 2, seed=3, reg_covar=1e-6)
    # components come sorted by weight: the 70% one first
    assert gmm["weights"] == pytest.approx(weights, abs=0.02)
    for k in range(2):
        assert np.abs(gmm["means"][k] - means[k]).max() < 0.05
        assert np.abs(gmm["covars"][k] - covs[k]).max() < 0.03
    # the fit explains the data better than the truth's own density only by sampling noise
    truth = {"means": np.stack(means), "covars": np.stack(covs), "weights": np.array(weights)}
    assert gmm["log_likelihood"] == pytest.approx(gmm_log_likelihood(x, truth).mean(), abs=0.02)


def test_em_is_reproducible_and_regularised():
    x, *_ = _two_component_samples(1000, seed=1)
    x = np.concatenate([x, np.zeros((1000, 1))], 1)  # a dimension that never moves
    a = fit_gmm(x, 3, seed=7, reg_covar=1e-3)
    b = fit_gmm(x, 3, seed=7, reg_covar=1e-3)
    assert np.array_equal(a["means"], b["means"])
    assert a["covars"][:, 3, 3] == pytest.approx(1e-3)  # the ridge keeps it invertible
    assert np.all(np.linalg.eigvalsh(a["covars"]) > 0)
    with pytest.raises(ValueError, match="at least 3 samples"):
        fit_gmm(x[:2], 3)


def test_save_load_and_torch_prior_match_numpy(tmp_path):
    x, *_ = _two_component_samples(2000, seed=2)
    gmm = fit_gmm(x, 2, seed=0)
    path = tmp_path / "prior.npz"
    save_gmm(path, gmm, source="test")
    loaded = load_gmm(path)
    assert loaded["means"].dtype == np.float32 and str(loaded["meta_source"]) == "test"
    prior = GMMPrior(loaded, dtype=torch.float64)
    pts = torch.tensor(x[:50])
    ll_torch = prior.log_likelihood(pts).numpy()
    assert np.allclose(ll_torch, gmm_log_likelihood(x[:50], loaded), atol=1e-6)
    # the SMPLify penalty is the best single component's -log(w_k N_k): never below the
    # mixture's -log density, and at most log(K) above it
    nll = prior(pts).numpy()
    assert np.all(nll >= -ll_torch - 1e-9) and np.all(nll <= -ll_torch + math.log(2) + 1e-9)
    # direct check of the formula for one point and component
    k = 0
    m, c, w = (np.asarray(loaded[key], np.float64) for key in ("means", "covars", "weights"))
    d = x[0] - m[k]
    direct = (
        0.5 * d @ np.linalg.solve(c[k], d)
        - math.log(w[k])
        + 0.5 * np.linalg.slogdet(c[k])[1]
        + 1.5 * math.log(2 * math.pi)
    )
    assert prior.component_nll(pts[:1])[0, k].item() == pytest.approx(direct, rel=1e-6)


def test_prior_is_differentiable_and_batched():
    x, *_ = _two_component_samples(1000, seed=3)
    prior = GMMPrior(fit_gmm(x, 2, seed=0))
    pose = torch.zeros(4, 5, 3, requires_grad=True)
    out = prior(pose)
    assert out.shape == (4, 5)
    out.sum().backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0


def test_load_errors(tmp_path):
    with pytest.raises(ModelFileError):
        load_gmm(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, means=np.zeros((2, 3)))
    with pytest.raises(ModelFileError):
        load_gmm(bad)


shipped = pytest.mark.skipif(
    not DEFAULT_PRIOR_PATH.is_file(),
    reason="pose_prior_gmm.npz not built yet (tools/fit_pose_prior.py)",
)


@shipped
def test_shipped_prior_prefers_typical_poses():
    prior = load_default_prior()
    assert prior.num_components == 8 and prior.dim == 69
    rest = torch.zeros(23, 3)
    # mid-stride: one hip flexed, knees and elbows bent, arms down (body index = joint - 1)
    typical = torch.zeros(23, 3)
    typical[0, 0], typical[1, 0] = -0.4, 0.2  # hips (joints 1, 2)
    typical[3, 0], typical[4, 0] = 0.5, 0.2  # knees (4, 5)
    typical[6, 0] = typical[7, 0] = -0.2  # ankles (7, 8)
    typical[15, 2], typical[16, 2] = -1.2, 1.2  # shoulders (16, 17)
    typical[17, 1], typical[18, 1] = -0.6, 0.6  # elbows (18, 19)
    extreme = typical.clone()
    extreme[3, 0] = extreme[4, 0] = -1.0  # knees bent backwards
    extreme[17, 1], extreme[18, 1] = 1.2, -1.2  # elbows hyper-extended
    twisted = typical.clone()
    twisted[2, 1] = 2.0  # spine1 twisted 115 degrees
    nll = prior(torch.stack([typical, rest, extreme, twisted]))
    assert nll[0] < nll[2] - 30 and nll[0] < nll[3] - 100
    assert nll[1] < nll[2]
    # about symmetric: the training set holds both sides, though 8 components fitted by EM
    # need not pair up exactly, so allow a few nats (the gaps above are tens)
    mirrored = typical.clone()[
        [1, 0, 2, 4, 3, 5, 7, 6, 8, 10, 9, 11, 13, 12, 14, 16, 15, 18, 17, 20, 19, 22, 21]
    ]
    mirrored[:, 1:] *= -1
    assert prior(mirrored[None]).item() == pytest.approx(nll[0].item(), abs=6.0)
