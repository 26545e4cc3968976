"""smplx as the test reference (imported by tests only; the core never needs it).

Builds ``smplx.SMPLLayer`` (rotation-matrix inputs) and ``smplx.SMPL`` (axis-angle inputs,
the interface users of AMASS-style files call) from a ``ModelData``'s arrays, the way a
user would load any SMPL-format file into smplx.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch

smplx = __import__("pytest").importorskip("smplx")
from smplx.utils import Struct

from lsmplify_blender.core.body_model import SMPL_TOPOLOGY_LANDMARKS

# smplx indexes these vertex names for its extra joints (we never read those, only the
# vertices and the 24 joints); models without them get vertex 0 there.
SMPLX_VERTEX_NAMES = tuple(n for n in SMPL_TOPOLOGY_LANDMARKS if n != "head_top")


def _struct(d) -> Struct:
    posedirs = (
        d.posedirs if d.posedirs is not None else np.zeros((d.num_vertices, 3, 207), np.float32)
    )
    kintree = np.stack([d.parents, np.arange(24)]).astype(np.int64)
    return Struct(
        v_template=d.v_template,
        shapedirs=d.shapedirs,
        posedirs=posedirs,
        J_regressor=d.J_regressor,
        weights=d.weights,
        kintree_table=kintree,
        f=d.faces,
    )


def smplx_layer(d, batch_size: int, dtype=torch.float64, num_betas: int = 10, cls=None):
    """A smplx ``SMPLLayer`` (or ``cls``, e.g. ``smplx.SMPL``) holding the model ``d``'s arrays."""
    cls = cls or smplx.SMPLLayer
    vids = {k: d.landmarks.get(k, 0) for k in SMPLX_VERTEX_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a 10-betas warning
        return cls(
            model_path="",
            data_struct=_struct(d),
            vertex_ids=vids,
            num_betas=num_betas,
            batch_size=batch_size,
            dtype=dtype,
        )
