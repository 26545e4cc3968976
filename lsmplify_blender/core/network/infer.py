"""Inference with the residual IK network: chunk-parallel sequential solve and plug-in refinement.

Sequential (no ground truth anywhere): betas come from the shape inverse (the caller),
every frame also gets the analytic solution (cheap, batched). The clip is cut into chunks
of ``chunk`` frames; each chunk starts from the analytic pose of its first frame refined by
one plug-in pass, then the network goes frame to frame (init = previous result), all chunks
in lockstep as one batch. After every network step the bones are re-aimed at the keypoints
(swing only, the network's twist is kept), so joint error cannot build up; the drift guard
compares the network's own fit error (before re-aiming) with the analytic one and
re-anchors a chunk (analytic + plug-in pass) where the network has drifted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..analytic_ik import solve_analytic
from ..body_model import BodyModel
from ..device import torch_threads
from .kinematics import fk, reaim
from .model import ResidualIKNet, build_features, compose, load_network
from .pairs import ESSENTIAL
from .precision import fast_network

_CACHE: dict = {}
BLOCK_FRAMES = 8192


def network_targets(
    targets: torch.Tensor, weight: torch.Tensor, joints_ref: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The SMPL-24 keypoints (T, 24, 3) the network aims at and their 0/1 mask (T, 24).

    The keypoints are ``joints_ref``, the analytic solution's joints: the measured bone directions
    on the model's own bone lengths (analytic IK aims from the rebuilt joint, or along the captured
    bone where a rig's proportions differ from the model's). Re-aiming the network's bones at the
    raw measured points instead pointed them from SMPL's own torso at joints it cannot reach: CMU's
    lowerneck and thorax sit 13-20 cm from SMPL's neck and spine2 on 131_01.bvh, and the neck went
    down into the chest (122 deg off; 8.6 deg on 01_01.amc even with points within 5 cm); aimed at
    the analytic joints it is 0.0 deg off. On model-made keypoints the two are the same points.
    The mask is the measured joints plus those training never dropped (pelvis, hips, neck:
    ``ESSENTIAL``): a layout without a pelvis (CMU) would otherwise show the network an input it
    never saw (its root-relative features are zeroed with the root's mask)."""
    m = weight > 0
    m[:, list(ESSENTIAL)] = True
    return joints_ref.to(targets.dtype), m.to(targets.dtype)


def default_network(device="cpu") -> ResidualIKNet:
    key = str(device)
    if key not in _CACHE:
        _CACHE[key] = load_network(device=device)
    return _CACHE[key]


@dataclass
class NetworkInfo:
    reanchored: int
    anchors: int
    steps: int


def network_step(
    net,
    model_rest,
    betas,
    rot_init,
    kp_init,
    kp_tgt,
    m_init,
    m_tgt,
    refit: bool = True,
    fk_init=None,
    return_joints: bool = False,
    m_fit=None,
    fit_error: bool = True,
):
    """One network pass + optional re-aim. Returns (rotmats, trans, raw fit error in m (B,)) and,
    with ``return_joints``, the joints of the result (to pass as the next step's ``fk_init``).
    ``m_fit``: which targets the re-aim uses (default ``m_tgt``; the sequential solver passes
    ones, its missing keypoints being filled from the analytic solution). ``fit_error=False``
    skips the raw fit error (returned as None) where nobody reads it."""
    n = rot_init.shape[0]
    rest = model_rest.expand(n, -1, -1)
    fk0 = fk(rot_init, rest)[1] if fk_init is None else fk_init
    feats = build_features(kp_init, kp_tgt, m_init, m_tgt, rot_init, fk0, betas.expand(n, -1), rest)
    rot = compose(rot_init, net(feats))
    err = None
    if fit_error or not refit:
        _, j = fk(rot, rest)
        tgt_rel = kp_tgt - kp_tgt[:, :1]
        err = ((j - j[:, :1] - tgt_rel).norm(dim=-1) * m_tgt).sum(-1) / m_tgt.sum(-1).clamp_min(1)
    if not refit:
        out = (rot, kp_tgt[:, 0] - rest[:, 0], err)
        return out + (j - j[:, :1] + kp_tgt[:, :1],) if return_joints else out
    out = reaim(rot, rest, kp_tgt, m_tgt if m_fit is None else m_fit, return_joints=return_joints)
    return (out[0], out[1], err) + tuple(out[2:])


@torch.no_grad()
def refine_network(
    model: BodyModel,
    betas,
    rotmats,
    targets,
    weight,
    passes: int = 2,
    net=None,
    device=None,
    refit: bool = True,
    joints_ref=None,
):
    """Plug-in mode: init = existing SMPL rotations (T, 24, 3, 3), target = SMPL-24 keypoints (T, 24, 3)
    with weights (T, 24). Returns (rotmats, trans).

    ``joints_ref`` (T, 24, 3), the analytic solution's joints, completes the targets (see
    ``network_targets``): without it a layout with no pelvis keypoint re-aimed every bone from a
    root left at the rest position (01_01.amc: fit error 40 -> 713 mm)."""
    dev = torch.device(device) if device is not None else model.device
    net = net or default_network(dev)
    rot = torch.as_tensor(rotmats, dtype=torch.float32, device=dev)
    kp = torch.as_tensor(targets, dtype=torch.float32, device=dev)
    w = torch.as_tensor(weight, dtype=torch.float32, device=dev)
    if joints_ref is None:
        kp, m, m_fit = torch.nan_to_num(kp), (w > 0).float(), None
    else:
        kp, m = network_targets(kp, w, torch.as_tensor(joints_ref, dtype=torch.float32, device=dev))
        m_fit = torch.ones_like(m)  # every target is there: measured or the analytic stand-in
    rest = model.rest_joints(betas).to(dev, torch.float32)
    b = model.betas_tensor(betas).to(dev, torch.float32)
    trans = None
    for _ in range(passes):
        rot, trans, _ = network_step(
            net, rest, b, rot, kp, kp, m, m, refit, m_fit=m_fit, fit_error=False
        )
    return rot, trans


@torch.no_grad()
def solve_network(
    prepared,
    model: BodyModel,
    betas,
    net=None,
    chunk: int = 16,
    device=None,
    guard_mm: float = 15.0,
    anchor_passes: int = 1,
    threads: int | None = 1,
    refit: bool = True,
):
    """Sequential chunk-parallel solve. Returns (rotmats (T, 24, 3, 3), trans (T, 3), NetworkInfo).

    ``threads``: torch threads while solving (1 is fastest for these small batches; None = as set).
    ``refit``: re-aim the bones at the keypoints after each step (exact joints on clean keypoints;
    on noisy ones it also fits the noise, where the raw network output is smoother)."""
    targets, weight = prepared.smpl_targets()
    measured = prepared.aim_origins()
    lm_names, lm_t, lm_w = prepared.landmark_targets()
    betas = model.betas_tensor(betas)[:1]
    dev = torch.device(device) if device is not None else model.device
    # long takes go in blocks (a whole number of chunks) so memory stays bounded
    block = max(chunk, BLOCK_FRAMES // chunk * chunk)
    rot, trans, info = [], [], NetworkInfo(reanchored=0, anchors=0, steps=chunk)
    for s in range(0, targets.shape[0], block):
        e = s + block
        with torch_threads(threads):
            ana = solve_analytic(
                model,
                betas,
                targets[s:e],
                weight[s:e],
                lm_names,
                lm_t[s:e],
                lm_w[s:e],
                measured=measured[s:e],
                bone_ends=prepared.bone_end_landmarks(lm_names),
            )
        r, t, i = solve_network_from(
            model,
            betas,
            torch.as_tensor(np.nan_to_num(targets[s:e]), dtype=torch.float32),
            torch.as_tensor(weight[s:e], dtype=torch.float32),
            ana.rotmats,
            ana.joints,
            net=net,
            chunk=chunk,
            device=dev,
            guard_mm=guard_mm,
            anchor_passes=anchor_passes,
            threads=threads,
            refit=refit,
        )
        rot.append(r)
        trans.append(t)
        info.reanchored += i.reanchored
        info.anchors += i.anchors
    return torch.cat(rot), torch.cat(trans), info


@torch.no_grad()
def solve_network_from(
    model,
    betas,
    targets,
    weight,
    rot_analytic,
    joints_analytic,
    net=None,
    chunk: int = 16,
    device="cpu",
    guard_mm: float = 15.0,
    anchor_passes: int = 1,
    threads: int | None = 1,
    refit: bool = True,
):
    """The sequential solve given the analytic solution (T, 24, 3, 3) and its joints (T, 24, 3).

    Chunk-parallel: every ``chunk``-th frame is anchored on its analytic solution, the frames
    between are solved from their predecessor, all chunks at once; a step whose fit error
    exceeds the analytic one by ``guard_mm`` is re-anchored."""
    dev = torch.device(device)
    f32: dict[str, Any] = dict(dtype=torch.float32, device=dev)
    with torch_threads(threads):
        kp, m = network_targets(targets.to(**f32), weight.to(**f32), joints_analytic.to(**f32))
        rest = model.rest_joints(betas).to(**f32)[:1]
        # the solve's throughput path: bf16 blocks on a CPU that has it natively (``precision``),
        # float32 elsewhere; the plug-in refinement (``refine_network``) stays float32
        chain = _Chain(
            net=fast_network(net or default_network(dev), rest[0]),
            rest=rest,
            betas=model.betas_tensor(betas)[:1].to(**f32),
            kp=kp,
            m=m,
            rot_a=rot_analytic.to(**f32),
            joints_a=joints_analytic.to(**f32),
            anchor_passes=anchor_passes,
            refit=refit,
        )
        return _solve_chunks(chain, chunk, guard_mm)


@dataclass
class _Chain:
    """What every step of the chunk-parallel solve reads, float32 on the solve's device:
    keypoint targets ``kp`` and their mask ``m`` (T, 24, ...), the analytic solution, the rest
    joints (1, 24, 3) and betas (1, B)."""

    net: Any
    rest: torch.Tensor
    betas: torch.Tensor
    kp: torch.Tensor
    m: torch.Tensor
    rot_a: torch.Tensor
    joints_a: torch.Tensor
    anchor_passes: int
    refit: bool

    def anchor(self, idx):
        """(rotmats, trans, joints) of frames ``idx`` from their analytic solution (its joints:
        no FK needed), refined by ``anchor_passes`` network steps in place."""
        r, tr, jj = self.rot_a[idx], self.kp[idx, 0] - self.rest[0, 0], self.joints_a[idx]
        for _ in range(self.anchor_passes):
            r, tr, _, jj = self.step(idx, idx, r, jj, fit_error=False)
        return r, tr, jj

    def step(self, prev, idx, rot_prev, joints_prev, fit_error: bool = True):
        """(rotmats, trans, fit error, joints) of frames ``idx`` from the solved frames ``prev``."""
        return network_step(
            self.net,
            self.rest,
            self.betas,
            rot_prev,
            self.kp[prev],
            self.kp[idx],
            self.m[prev],
            self.m[idx],
            self.refit,
            fk_init=joints_prev,
            return_joints=True,
            m_fit=torch.ones_like(self.m[idx]),
            fit_error=fit_error,
        )


def _analytic_error(chain: _Chain) -> torch.Tensor:
    """(T,) root-relative fit error (m) of the analytic solution: the drift guard's baseline."""
    t = chain.kp.shape[0]
    _, ja = fk(chain.rot_a, chain.rest.expand(t, -1, -1))
    rel = chain.kp - chain.kp[:, :1]
    m = chain.m
    return ((ja - ja[:, :1] - rel).norm(dim=-1) * m).sum(-1) / m.sum(-1).clamp_min(1)


def _solve_chunks(chain: _Chain, chunk: int, guard_mm: float):
    """(rotmats, trans, NetworkInfo) of ``solve_network_from``'s chunk-parallel walk."""
    t = chain.kp.shape[0]
    f32: dict[str, Any] = dict(dtype=torch.float32, device=chain.kp.device)
    err_a = _analytic_error(chain) if chunk > 1 else None
    out = torch.empty(t, 24, 3, 3, **f32)
    trans = torch.empty(t, 3, **f32)
    joints = torch.empty(t, 24, 3, **f32)
    starts = torch.arange(0, t, chunk, device=chain.kp.device)
    out[starts], trans[starts], joints[starts] = chain.anchor(starts)
    reanchored = 0
    for k in range(1, chunk):
        idx = starts + k
        idx = idx[idx < t]
        if idx.numel() == 0:
            break
        prev = idx - 1
        r, tr, err, jj = chain.step(prev, idx, out[prev], joints[prev])
        assert err_a is not None  # chunk > 1 here
        bad = err > err_a[idx] + guard_mm / 1000.0
        if bool(bad.any()):
            reanchored += int(bad.sum())
            r[bad], tr[bad], jj[bad] = chain.anchor(idx[bad])
        out[idx], trans[idx], joints[idx] = r, tr, jj
    return out, trans, NetworkInfo(reanchored=reanchored, anchors=len(starts), steps=chunk)
