"""SMPL's 24-joint kinematic tree: names, parents, children, depth levels and bones.

Everything here is computed once at import from ``SMPL_PARENTS`` (Loper et al. 2015, SMPL:
A Skinned Multi-Person Linear Model, the ``kintree_table`` of the released model files).
A joint's parent always has a smaller index, so walking the joints in index order, or level
by level (``LEVELS``), visits every parent before its children.

The tree helpers (``children_of``, ``depths_of``, ``levels_of``) take any parent array
(e.g. the 38-node CMU skeleton) so that general trees share the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

SMPL_JOINT_NAMES = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hand",
    "right_hand",
)
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
NUM_JOINTS = 24


def children_of(parents: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """``kids[j]``: the joints whose parent is j, in index order (parents (J,), root -1)."""
    kids: list[list[int]] = [[] for _ in parents]
    for j, p in enumerate(parents):
        if p >= 0:
            kids[p].append(j)
    return tuple(tuple(k) for k in kids)


def depths_of(parents: Sequence[int]) -> tuple[int, ...]:
    """Depth of each joint: 0 for a root, depth(parent) + 1 otherwise (parents precede children)."""
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        if p >= 0:
            if p >= j:
                raise ValueError(
                    f"joint {j} has parent {p}: parents must come before their children"
                )
            depth[j] = depth[p] + 1
    return tuple(depth)


def levels_of(parents: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """Non-root joints grouped by depth 1, 2, ...: the joints of one level are independent of
    each other given the level above, so forward kinematics is one batched step per level
    (SMPL: 8 levels instead of 23 joints)."""
    depth = depths_of(parents)
    levels: list[list[int]] = [[] for _ in range(max(depth, default=0))]
    for j, d in enumerate(depth):  # one pass: a file's 3,000-bone chain is 3,000 levels
        if d:
            levels[d - 1].append(j)
    return tuple(tuple(js) for js in levels)


def ancestors_of(parents: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """``anc[j]``: j itself and every joint above it, up to the root (j first)."""
    out = []
    for j in range(len(parents)):
        chain = [j]
        while parents[chain[-1]] >= 0:
            chain.append(parents[chain[-1]])
        out.append(tuple(chain))
    return tuple(out)


def mirrored_names(names: Sequence[str]) -> tuple[int, ...]:
    """Index of each joint's left/right counterpart (itself on the midline), by its name."""
    swap = [n.replace("left", "@").replace("right", "left").replace("@", "right") for n in names]
    return tuple(list(names).index(s) for s in swap)


SMPL_CHILDREN = children_of(SMPL_PARENTS)
SMPL_DEPTHS = depths_of(SMPL_PARENTS)
SMPL_LEVELS = levels_of(SMPL_PARENTS)
SMPL_ANCESTORS = ancestors_of(SMPL_PARENTS)
# bone b = (parent, child) with child = b + 1: the 23 bones in joint order
SMPL_BONES = tuple((SMPL_PARENTS[j], j) for j in range(1, NUM_JOINTS))
SMPL_MIRROR = mirrored_names(SMPL_JOINT_NAMES)
JOINT_INDEX = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
