"""The real takes kept out of the network's training data: the real-capture evaluation
(``python -m lsmplify_blender eval --real``) measures on them.

One list, used by both sides: ``tools/build_training_data.py`` skips every take named here,
and ``research/real_eval.py`` evaluates them (paths relative to the mocap data root, see
``/work/shared/data/mocap/README.md`` for the folders). ``cmu_subset/test`` is held out as a
whole (the published split); the CMU FBX rigs never entered training (the evaluation reads
their BVH exports in ``tests/fixtures/cmu_fbx_bvh``).
"""

from __future__ import annotations

from pathlib import Path

HELD_OUT_CMU_SUBSET = "cmu_subset/test"
# CMU BVH (LeftHip / Chest2 / lowerneck dialect): subject 131's third take
HELD_OUT_BVH = ("cmu_raw/131_03.bvh",)
# ASF/AMC: (motion, skeleton). Subject 11 has its own ASF; the amc_without_own_asf takes are
# driven by 01.asf, as a user would with --asf
HELD_OUT_AMC = (
    ("cmu_raw/11_01.amc", "cmu_raw/11.asf"),
    ("cmu_raw/amc_without_own_asf/05_13.amc", "cmu_raw/01.asf"),
    ("cmu_raw/amc_without_own_asf/90_08.amc", "cmu_raw/01.asf"),
)
HELD_OUT_DEEPMIMIC = (
    "deepmimic/humanoid3d_walk.txt",
    "deepmimic/humanoid3d_punch.txt",
    "deepmimic/humanoid3d_spinkick.txt",
)
DEEPMIMIC_CHARACTER = "deepmimic/humanoid3d_character.txt"


def held_out_files() -> tuple[str, ...]:
    """Every held-out motion file outside cmu_subset/test, relative to the data root."""
    return HELD_OUT_BVH + tuple(m for m, _ in HELD_OUT_AMC) + HELD_OUT_DEEPMIMIC


def is_held_out(path, data_root) -> bool:
    """True when ``path`` is a held-out take (or lies under cmu_subset/test) of ``data_root``."""
    try:
        rel = Path(path).resolve().relative_to(Path(data_root).resolve()).as_posix()
    except ValueError:
        return False
    return rel in held_out_files() or rel.startswith(HELD_OUT_CMU_SUBSET + "/")
