"""The SMPL forward pass (Loper et al. 2015, SMPL: A Skinned Multi-Person Linear Model).

For shape betas beta (B, nb), local joint rotations R (B, 24, 3, 3) and translation t:

    1. blend shapes      T_S(beta)    = T + S beta                       (eq. 8)
    2. pose correctives  T_P(beta, R) = T_S(beta) + P vec(R_j - I)       (eq. 9)
    3. joint regression  J(beta)      = J_reg T_S(beta) = J_reg T + (J_reg S) beta   (eq. 10)
    4. forward kinematics of J(beta) under R  (``kinematics.forward_kinematics``)
    5. linear blend skinning of T_P  (``skinning.linear_blend_skinning``), then + t

with T = ``v_template`` (V, 3), S = ``shapedirs`` (V, 3, nb), P = ``posedirs`` (V, 3, 207),
J_reg = ``J_regressor`` (24, V). Joint regression is linear in beta, so ``BodyModel`` keeps
J_reg T and J_reg S (24 x 3 x nb numbers) and step 3 is ``blend_shapes`` on those: the
joints never need the mesh. Steps 1, 2 and 5 can be restricted to a few vertex ids
(landmarks) at the same cost per vertex. This is what ``smplx.SMPL`` computes (its
``lbs.py``); tests check the two meshes agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .backend import numpy_or_torch
from .kinematics import forward_kinematics
from .skinning import linear_blend_skinning, pose_feature

if TYPE_CHECKING:  # pragma: no cover
    from ..body_model import BodyModel


@numpy_or_torch
def blend_shapes(
    template: torch.Tensor, directions: torch.Tensor, betas: torch.Tensor
) -> torch.Tensor:
    """template (N, 3) + directions (N, 3, nb) . betas (B, nb) -> (B, N, 3)."""
    return template + torch.einsum("vcb,nb->nvc", directions, betas)


def pose_correctives(posedirs: torch.Tensor, rotmats: torch.Tensor) -> torch.Tensor:
    """Pose blend-shape offsets (B, N, 3) = posedirs (N, 3, 207) . pose_feature(rotmats)."""
    return torch.einsum("vcp,np->nvc", posedirs, pose_feature(rotmats))


def posed_points(
    model: BodyModel,
    rotmats: torch.Tensor,
    betas: torch.Tensor,
    trans: torch.Tensor | None = None,
    ids=None,
    kinematics=None,
) -> torch.Tensor:
    """Steps 1-5 for the vertices ``ids`` (all when None): (B, len(ids) or V, 3).

    rotmats (B, 24, 3, 3); betas (B, nb) as given by ``model.betas_tensor(betas, B)``;
    trans (B, 3) or None; ``kinematics``: steps 3-4 already done for these rotmats and betas
    (rest joints, global rotations, posed joints), when the caller has them.
    """
    if kinematics is None:
        rest_j = model.rest_joints(betas)
        glob, posed_j = forward_kinematics(rotmats, rest_j, model.parents)
    else:
        rest_j, glob, posed_j = kinematics
    v = model.rest_vertices(betas, ids)
    if model.posedirs is not None:
        v = v + pose_correctives(model.posedirs if ids is None else model.posedirs[ids], rotmats)
    w = model.weights if ids is None else model.weights[ids]
    out = linear_blend_skinning(v, w, glob, posed_j, rest_j)
    return out if trans is None else out + trans[:, None]
