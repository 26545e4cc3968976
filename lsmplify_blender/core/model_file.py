"""Reading and validating an SMPL-format model file, once, at load (no torch here).

A model file is hostile until this module has checked it: only the arrays a model needs
are read (``safe_npy`` for .npz, ``safe_pickle`` for .pkl), then every array is checked
for dtype, shape, finite and plausible values (weights that sum to one, a regressor whose
rows are averages of vertices, a body between 0.3 and 3 m tall), and the metadata for
type and size. ``body_model.load_model_data`` turns the result into ``ModelData``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import ModelFileError
from .model.skeleton import NUM_JOINTS
from .safe_npy import read_npz
from .safe_pickle import load_smpl_pickle

REQUIRED = ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f")
OPTIONAL = ("posedirs", "landmark_names", "landmark_ids", "meta_json")
_FLOATS = ("v_template", "shapedirs", "J_regressor", "weights", "posedirs")
# Largest plausible magnitudes (metres per unit): SMPL's shapedirs are ~0.1, posedirs ~0.1.
_MAX_ABS = {
    "v_template": 10.0,
    "shapedirs": 10.0,
    "posedirs": 10.0,
    "J_regressor": 10.0,
    "weights": 1.0 + 1e-3,
}
_HEIGHT_RANGE_M = (0.3, 3.0)  # an infant to the tallest adult, Y up, metres
_MAX_META_CHARS = 1 << 20
_MAX_META_DEPTH = 16
_MAX_LANDMARKS = 10_000


def _fix(name: str) -> str:
    return (
        f"{name} is not a usable SMPL-format model. Use the official SMPL_NEUTRAL/MALE/FEMALE .pkl, "
        "an .npz with SMPL's arrays, or leave the model unset for the embedded open model."
    )


def read_raw(path: Path) -> dict:
    """The model's arrays (only those a model uses), read with sizes checked first."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        raw, _ = read_npz(path, ModelFileError, keys=REQUIRED + OPTIONAL, kinds="biufU")
        return raw
    if suffix == ".pkl":
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelFileError(
                f"Cannot read the model '{path}': {exc.strerror or exc}."
            ) from None
        return load_smpl_pickle(data, keys=REQUIRED + OPTIONAL)
    raise ModelFileError(
        f"{path.name}: body models must be SMPL .pkl or .npz files (got '{suffix or 'no extension'}')."
    )


def _numeric(raw: dict, key: str, name: str, kinds: str = "biuf") -> np.ndarray:
    arr = raw[key]
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in kinds:
        what = f"dtype {arr.dtype}" if isinstance(arr, np.ndarray) else f"a {type(arr).__name__}"
        raise ModelFileError(f"{name}: '{key}' is {what}, not a numeric array. {_fix(name)}")
    return arr


def check_shapes(raw: dict, name: str) -> None:
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise ModelFileError(
            f"{name} is not an SMPL-format model: missing {', '.join(missing)}. Expected the "
            f"arrays {', '.join(REQUIRED)} (SMPL_NEUTRAL/MALE/FEMALE .pkl or an .npz with those keys)."
        )
    arrays = {k: _numeric(raw, k, name) for k in REQUIRED + ("posedirs",) if k in raw}
    v = arrays["v_template"]
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < NUM_JOINTS:
        raise ModelFileError(
            f"{name}: v_template has shape {v.shape}, expected (V, 3). {_fix(name)}"
        )
    nv = v.shape[0]
    sd, f = arrays["shapedirs"], arrays["f"]
    checks = {
        "shapedirs": (
            sd.ndim == 3 and sd.shape[:2] == (nv, 3) and sd.shape[2] >= 1,
            f"({nv}, 3, num_betas)",
        ),
        "J_regressor": (arrays["J_regressor"].shape == (NUM_JOINTS, nv), f"(24, {nv})"),
        "weights": (arrays["weights"].shape == (nv, NUM_JOINTS), f"({nv}, 24)"),
        "kintree_table": (arrays["kintree_table"].shape == (2, NUM_JOINTS), "(2, 24)"),
        "f": (f.ndim == 2 and f.shape[1] == 3 and f.shape[0] >= 1, "(F, 3)"),
    }
    if "posedirs" in arrays:
        checks["posedirs"] = (
            arrays["posedirs"].shape in ((nv, 3, 207), (207, nv * 3)),
            f"({nv}, 3, 207)",
        )
    for key, (ok, expected) in checks.items():
        if not ok:
            raise ModelFileError(
                f"{name}: '{key}' has shape {arrays[key].shape}, expected {expected}. "
                "Only 24-joint SMPL-format body models are supported (not SMPL-H/SMPL-X/MANO)."
            )
    if f.dtype.kind not in "iu" or f.min() < 0 or f.max() >= nv:
        raise ModelFileError(
            f"{name}: faces ('f') must be vertex numbers 0..{nv - 1}. {_fix(name)}"
        )


def check_values(raw: dict, name: str) -> None:
    """Finite, plausible numbers: the checks a broken or tampered model fails."""
    for key in _FLOATS:
        if key not in raw:
            continue
        arr = np.asarray(raw[key], dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ModelFileError(f"{name}: '{key}' contains NaN or infinite values. {_fix(name)}")
        peak = float(np.abs(arr).max()) if arr.size else 0.0
        if peak > _MAX_ABS[key]:
            raise ModelFileError(
                f"{name}: '{key}' has values up to {peak:.3g}, beyond the {_MAX_ABS[key]:g} "
                f"any body model in metres has. {_fix(name)}"
            )
    weights = np.asarray(raw["weights"], np.float64)
    sums = weights.sum(axis=1)
    if weights.min() < -1e-3 or np.abs(sums - 1).max() > 1e-2:
        bad = int(np.argmax(np.abs(sums - 1)))
        raise ModelFileError(
            f"{name}: skinning weights must be >= 0 and sum to 1 per vertex (vertex {bad} "
            f"sums to {sums[bad]:.3g}). {_fix(name)}"
        )
    jreg = np.asarray(raw["J_regressor"], np.float64)
    row_sums = jreg.sum(axis=1)
    if np.abs(row_sums - 1).max() > 5e-2:
        bad = int(np.argmax(np.abs(row_sums - 1)))
        raise ModelFileError(
            f"{name}: J_regressor row {bad} sums to {row_sums[bad]:.3g}; each joint must be an "
            f"average of vertices (rows sum to 1). {_fix(name)}"
        )
    v = np.asarray(raw["v_template"], np.float64)
    height = float(v[:, 1].max() - v[:, 1].min())
    lo, hi = _HEIGHT_RANGE_M
    if not lo <= height <= hi:
        raise ModelFileError(
            f"{name}: the rest body is {height:.3g} m tall (Y up), not a human in metres "
            f"({lo}-{hi} m). {_fix(name)}"
        )
    _numeric(raw, "kintree_table", name, "iu")


def read_landmarks(raw: dict, nv: int, name: str) -> dict[str, int] | None:
    """The file's named landmark vertices, checked; None when it names none."""
    if "landmark_names" not in raw or "landmark_ids" not in raw:
        return None
    names, ids = raw["landmark_names"], raw["landmark_ids"]
    if not (isinstance(names, np.ndarray) and names.dtype.kind == "U" and names.ndim == 1):
        raise ModelFileError(f"{name}: landmark_names must be a list of text. {_fix(name)}")
    ids = _numeric(raw, "landmark_ids", name, "iu")
    if ids.shape != names.shape or len(names) > _MAX_LANDMARKS:
        raise ModelFileError(
            f"{name}: {len(names)} landmark names for {ids.size} landmark ids. {_fix(name)}"
        )
    if ids.size and (ids.min() < 0 or ids.max() >= nv):
        raise ModelFileError(
            f"{name}: landmark ids must be vertex numbers 0..{nv - 1} "
            f"(found {int(ids.min())}..{int(ids.max())}). {_fix(name)}"
        )
    if len(set(names.tolist())) != len(names):
        raise ModelFileError(f"{name}: landmark names repeat. {_fix(name)}")
    return {str(n): int(i) for n, i in zip(names.tolist(), ids.tolist(), strict=True)}


def _depth(value, limit: int) -> int:
    """Nesting depth of parsed JSON, without recursing past ``limit``."""
    level, frontier = 0, [value]
    while frontier:
        level += 1
        if level > limit:
            return level
        frontier = [
            c
            for v in frontier
            if isinstance(v, (list, dict))
            for c in (v.values() if isinstance(v, dict) else v)
        ]
    return level


def read_meta(raw: dict, name: str) -> dict:
    """The model's ``meta_json``: a JSON object; 'name' and 'gender' (if given) are text."""
    if "meta_json" not in raw:
        return {}
    text = raw["meta_json"]
    if not (
        isinstance(text, np.ndarray) and text.dtype.kind == "U" and text.ndim == 0
    ) and not isinstance(text, str):
        raise ModelFileError(f"{name}: meta_json must be one JSON text. {_fix(name)}")
    text = str(text)
    if len(text) > _MAX_META_CHARS:
        raise ModelFileError(
            f"{name}: meta_json is {len(text)} characters, more than any model needs."
        )
    try:
        meta = json.loads(text, parse_constant=lambda c: None)  # NaN/Infinity are not JSON
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(
            f"{name}: meta_json is not valid JSON ({type(exc).__name__}: "
            f"{str(exc)[:100]}). {_fix(name)}"
        ) from None
    if not isinstance(meta, dict) or _depth(meta, _MAX_META_DEPTH) > _MAX_META_DEPTH:
        raise ModelFileError(
            f"{name}: meta_json must be a JSON object nested at most {_MAX_META_DEPTH} deep. "
            f"{_fix(name)}"
        )
    for key in ("name", "gender"):
        if key in meta and not isinstance(meta[key], str):
            raise ModelFileError(
                f"{name}: meta_json '{key}' must be text, not {type(meta[key]).__name__}. "
                f"{_fix(name)}"
            )
    if "gender" in meta and meta["gender"] not in ("neutral", "male", "female"):
        raise ModelFileError(
            f"{name}: meta_json gender '{meta['gender'][:20]}' is not neutral, male or female."
        )
    return meta
