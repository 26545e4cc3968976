"""Keypoint file readers: every supported file -> ``KeypointSequence``.

``read_keypoints(path, asf=None)`` picks the reader from the file extension:

=========  =============================================================================
.npy       (T, J, 3) positions                                        (``arrays``)
.npz       ``keypoints`` + optional names/confidence/fps/units/up/layout/frames
.json      array form or per-frame form (see ``arrays``)
.csv       ``<name>_x,<name>_y,<name>_z`` columns (FreeMoCap style) or bare x,y,z triples
.bvh       Biovision hierarchy + motion; forward kinematics to joint positions (``bvh``)
.amc       Acclaim motion; needs its .asf skeleton (``acclaim``)
.txt       DeepMimic motion (JSON with ``Frames`` rows, sniffed from the content) on its
           humanoid3d character: joint positions and bone rotations (``deepmimic``)
=========  =============================================================================

The readers return what the file says (its own units and up axis when it declares them,
``None`` otherwise); ``prepare`` resolves the rest. Every problem with a file is raised
as ``InputError`` with a message saying what was wrong and what to do.
``read_cmu_subset(path, skeleton_json)`` reads the CMU motion-prediction subset .txt clips.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..keypoints import KeypointSequence
from ._common import check_file
from .acclaim import read_amc, read_asf
from .arrays import read_csv, read_json, read_npy, read_npz
from .bvh import read_bvh
from .cmu_subset import read_cmu_subset
from .deepmimic import looks_like_deepmimic, read_deepmimic

__all__ = [
    "SNIFFED_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "find_asf",
    "read_amc",
    "read_asf",
    "read_bvh",
    "read_cmu_subset",
    "read_csv",
    "read_deepmimic",
    "read_json",
    "read_keypoints",
    "read_npy",
    "read_npz",
]

_READERS = {
    ".npy": read_npy,
    ".npz": read_npz,
    ".json": read_json,
    ".csv": read_csv,
    ".bvh": read_bvh,
}
SUPPORTED_EXTENSIONS = (".npy", ".npz", ".json", ".csv", ".bvh", ".amc")
# read when the content says what they are (a .txt may be anything): DeepMimic motions
SNIFFED_EXTENSIONS = (".txt",)


def find_asf(amc_path) -> Path | None:
    """The subject's .asf next to an .amc: the longest .asf name that starts the motion's name
    at a word boundary (case-insensitive): CMU ``01_01.amc`` -> ``01.asf``,
    ``SUBJ_action_012.amc`` -> ``SUBJ.asf`` (or ``SUBJ_action.asf`` when both are there)."""
    p = Path(amc_path)
    motion = p.stem.lower()
    try:
        entries = sorted(p.parent.iterdir())
    except OSError:
        return None
    best = None
    for e in entries:
        stem = e.stem.lower()
        boundary = len(stem) == len(motion) or (
            len(stem) < len(motion) and not motion[len(stem)].isalnum()
        )
        if (
            e.suffix.lower() == ".asf"
            and stem
            and motion.startswith(stem)
            and boundary
            and e.is_file()
            and (best is None or len(stem) > len(best.stem))
        ):
            best = e
    return best


def read_keypoints(path, asf=None) -> KeypointSequence:
    """Read any supported keypoint file. ``asf`` is the skeleton for an .amc motion."""
    try:
        p = Path(os.fspath(path))
    except TypeError:
        raise InputError(f"Expected a file path, got {type(path).__name__}.") from None
    ext = p.suffix.lower()
    if ext == ".asf":
        check_file(p)
        raise InputError(
            f"'{p.name}' is an ASF skeleton: it has bones but no motion. Pass the .amc motion "
            f"file instead and give this skeleton with --asf {p.name}."
        )
    if ext == ".txt":
        check_file(p)
        if looks_like_deepmimic(p):
            seq = read_deepmimic(p)
            if asf is not None:
                seq.notes.append(
                    "an ASF skeleton was given but is only used for .amc files; ignored."
                )
            return seq
        raise InputError(
            f"'{p.name}': .txt is not a keypoint format read by extension. CMU-subset clips are "
            f"read with read_cmu_subset(path, skeleton_json); otherwise save as "
            f"{', '.join(SUPPORTED_EXTENSIONS)} (a .txt is read only as a DeepMimic motion: JSON "
            f'with "Frames" rows).'
        )
    if ext not in SUPPORTED_EXTENSIONS:
        raise InputError(
            f"'{p.name}': unsupported file type '{ext or '(no extension)'}'. Supported: "
            f"{', '.join(SUPPORTED_EXTENSIONS)}."
        )
    check_file(p)
    if ext == ".amc":
        if asf is None:
            asf = find_asf(p)
            if asf is None:
                subject = p.stem.split("_", 1)[0]
                raise InputError(
                    f"'{p.name}' is an Acclaim motion and needs its skeleton (.asf). None named "
                    f"'{subject}.asf' is next to it; pass the skeleton with --asf PATH "
                    f"(read_keypoints(path, asf=PATH))."
                )
            seq = read_amc(p, asf)
            seq.notes.append(f"ASF skeleton found next to the motion: '{Path(asf).name}'.")
            return seq
        a = Path(os.fspath(asf))
        if a.suffix.lower() != ".asf":
            raise InputError(f"--asf must name an .asf skeleton file, got '{a.name}'.")
        return read_amc(p, a)
    seq = _READERS[ext](p)
    if asf is not None:
        seq.notes.append("an ASF skeleton was given but is only used for .amc files; ignored.")
    return seq
