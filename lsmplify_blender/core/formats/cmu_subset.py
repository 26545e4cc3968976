"""Reader for the CMU motion-prediction subset text format (``cmu_subset/*.txt``).

One frame per line, 117 comma-separated numbers:
- columns 0..2: root position in CMU units (0.05644 m), (x, y, z) in file order. The data
  README says (z, y, x), but read that way no foot of a walk ever stops (walking_1: the ankle's
  10th-percentile horizontal speed 1.44 m/s, the body sliding sideways); in file order a stance
  foot stands (0.07 m/s) and the body walks the way it faces;
- columns 3..116: 38 nodes x 3 exponential-map rotations (radians), local to the parent;
  node 0 is the root's global rotation; end-site nodes are zero.

The skeleton (38 nodes: name, parent, offset in CMU units) comes from ``skeleton.json``.
Forward kinematics uses row vectors, as the data was published:
  R_0 = E(r_0),  p_0 = root position + offset_0
  R_i = E(r_i) · R_parent(i),   p_i = offset_i · R_parent(i) + p_parent(i)
with E Rodrigues' formula. In column vectors that is G_i = G_parent(i) E(r_i)^T with
G = R^T and p_i = p_parent(i) + G_parent(i) offset_i: ordinary forward kinematics with
local rotations E(r_i)^T (``cmu_forward_kinematics``, the one place this convention is
written; the network's rotation retarget uses it too). Y is up, the floor is y ≈ 0.
Node i's position is where bone i starts (lfemur = hip centre, ltibia = knee, lfoot =
ankle, ...).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..keypoints import KeypointSequence
from ..model.kinematics import rest_positions, tree_kinematics
from ..model.rotations import axis_angle_to_matrix
from ._common import finalize, parse_floats, read_text

CMU_SUBSET_FPS = 120.0


def read_cmu_skeleton(skeleton_json) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, parents (N,), offsets (N, 3)) from a cmu_subset ``skeleton.json``."""
    where = Path(skeleton_json).name
    text = read_text(skeleton_json, "JSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not valid JSON ({e.msg} at line {e.lineno}).") from None
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, list) or not nodes:
        raise InputError(f'{where}: expected {{"nodes": [{{name, parent, offset}}, ...]}}.')
    names, parents, offsets = [], [], []
    for k, n in enumerate(nodes):
        try:
            names.append(str(n["name"]))
            parents.append(int(n["parent"]))
            off = np.asarray(n["offset"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise InputError(
                f"{where}: node {k} needs 'name', integer 'parent' and 3-number 'offset'."
            ) from None
        if off.shape != (3,) or not np.isfinite(off).all():
            raise InputError(f"{where}: node {k} ('{names[-1]}') offset must be 3 finite numbers.")
        if "index" in n and int(n["index"]) != k:
            raise InputError(
                f"{where}: node {k} has index {n['index']}; nodes must be listed in order."
            )
        if not (-1 <= parents[-1] < k) or (parents[-1] == -1) != (k == 0):
            raise InputError(
                f"{where}: node {k} ('{names[-1]}') has parent {parents[-1]}; node 0 must be "
                f"the root (parent -1) and every other parent must come earlier."
            )
        offsets.append(off)
    return names, np.array(parents), np.stack(offsets)


def cmu_forward_kinematics(data: np.ndarray, parents, offsets: np.ndarray):
    """(T, 3 + 3N) rows -> column-convention global rotations G (T, N, 3, 3), world node
    positions (T, N, 3) and root positions (T, 3) (module docstring), float64."""
    data = np.asarray(data, dtype=np.float64)
    t, n = data.shape[0], len(parents)
    root = data[:, :3].copy()  # (x, y, z): see the module docstring
    local = np.swapaxes(axis_angle_to_matrix(data[:, 3:].reshape(t, n, 3)), -1, -2)  # E(r)^T
    glob, pos = tree_kinematics(
        local, np.asarray(offsets, dtype=np.float64), [int(p) for p in parents]
    )
    return glob, pos + root[:, None], root


def cmu_subset_forward_kinematics(
    data: np.ndarray, parents: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """(T, 3 + 3N) rows -> world positions (T, N, 3)."""
    return cmu_forward_kinematics(data, parents, offsets)[1]


def read_cmu_subset(path, skeleton_json) -> KeypointSequence:
    """Read one cmu_subset clip (.txt) with its ``skeleton.json`` into joint positions."""
    where = Path(path).name
    names, parents, offsets = read_cmu_skeleton(skeleton_json)
    N = len(names)
    width = 3 + 3 * N
    text = read_text(path, "CMU subset text")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    counts = {ln.count(",") + 1 for ln in lines}
    if counts != {width}:
        bad = next(k for k, ln in enumerate(lines) if ln.count(",") + 1 != width)
        raise InputError(
            f"{where}: every line must hold {width} comma-separated numbers (root position + "
            f"{N} x 3 rotations for the {N}-node skeleton); line {bad + 1} has "
            f"{lines[bad].count(',') + 1}. The file is truncated or does not match skeleton.json."
        )
    tokens = ",".join(lines).split(",")
    tokens = [t if t.strip() else "nan" for t in tokens]
    data = parse_floats(tokens, f"{where}").reshape(len(lines), width)
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN input -> NaN (missing)
        rotations, positions, _ = cmu_forward_kinematics(data, parents, offsets)
    notes = [
        (
            f"CMU subset clip: {len(lines)} frames, {N} nodes from '{Path(skeleton_json).name}'; "
            f"root position read as (c2, c1, c0); row-vector exp-map FK; node positions are bone "
            f"start points (lfemur = hip centre, ltibia = knee, lfoot = ankle)."
        ),
        (
            f"fps {CMU_SUBSET_FPS:g} (the CMU capture rate; the file has no rate), CMU units "
            f"(0.05644 m), Y up."
        ),
    ]
    seq = finalize(
        positions,
        names=names,
        fps=CMU_SUBSET_FPS,
        units="cmu",
        up="y",
        layout=None,
        source=str(path),
        notes=notes,
        where=where,
    )
    rest = rest_positions(offsets, [int(p) for p in parents])  # every exp map zero
    seq.rotations, seq.rest_positions = rotations.astype(np.float32), rest  # see KeypointSequence
    return seq
