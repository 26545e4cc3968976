"""Fuzz every keypoint reader: mutated real files and random bytes either read or raise InputError.

Bounded for CI: LSMPLIFY_FUZZ_EXAMPLES cases per format (default 2500, plus a fifth as many random files). Hypothesis shrinks
any failure to a minimal file.
"""

import io
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsmplify_blender.core.errors import InputError
from lsmplify_blender.core.formats import read_keypoints
from lsmplify_blender.core.keypoints import KeypointSequence

EXAMPLES = int(os.environ.get("LSMPLIFY_FUZZ_EXAMPLES", "2500"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _seeds() -> dict[str, bytes]:
    """Small valid files of every format, as the mutation seeds."""
    bvh = (FIXTURES / "01_01_short.bvh").read_text().splitlines()
    motion = bvh.index("MOTION")
    bvh_small = (
        "\n".join(
            bvh[:motion] + ["MOTION", "Frames: 3", bvh[motion + 2]] + bvh[motion + 3 : motion + 6]
        )
        + "\n"
    )
    amc = (FIXTURES / "01_01_short.amc").read_text().splitlines()
    second = next(i for i, line in enumerate(amc) if line.strip() == "3")
    kp = np.random.default_rng(0).normal(size=(3, 4, 3))
    names = ["left_hip", "right_hip", "left_knee", "right_knee"]
    npz = io.BytesIO()
    np.savez(npz, keypoints=kp, joint_names=np.array(names), fps=30.0, units="m")
    npy = io.BytesIO()
    np.save(npy, kp)
    csv = (
        ",".join(f"{n}_{c}" for n in names for c in "xyz")
        + "\n"
        + "\n".join(",".join(f"{v:.4f}" for v in row.ravel()) for row in kp)
        + "\n"
    )
    return {
        ".bvh": bvh_small.encode(),
        ".amc": ("\n".join(amc[:second]) + "\n").encode(),
        ".npz": npz.getvalue(),
        ".npy": npy.getvalue(),
        ".json": json.dumps({"keypoints": kp.tolist(), "joint_names": names, "fps": 30}).encode(),
        ".csv": csv.encode(),
    }


SEEDS = _seeds()


@st.composite
def mutated(draw, seed: bytes):
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=12))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 40))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 60))]
    return bytes(data)


def _read(ext: str, payload: bytes):
    tmp = Path(tempfile.mkdtemp())
    try:
        f = tmp / f"fuzz{ext}"
        f.write_bytes(payload)
        if ext == ".amc":
            shutil.copy(FIXTURES / "01.asf", tmp / "fuzz.asf")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a reader must not lean on numpy warnings either
            try:
                seq = read_keypoints(f)
            except InputError as exc:
                assert str(exc), "an InputError must say what was wrong"  # noqa: PT017
                return None
        assert isinstance(seq, KeypointSequence)
        assert (
            seq.positions.ndim == 3 and seq.positions.shape[-1] == 3 and seq.positions.shape[0] >= 1
        )
        return seq
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("ext", sorted(SEEDS))
def test_seed_files_read(ext):
    assert _read(ext, SEEDS[ext]) is not None


@pytest.mark.parametrize("ext", sorted(SEEDS))
def test_fuzz_mutated_files(ext):
    @FUZZ
    @given(mutated(SEEDS[ext]))
    def run(payload):
        _read(ext, payload)

    run()


@pytest.mark.parametrize("ext", sorted(SEEDS))
def test_fuzz_random_bytes(ext):
    @settings(max_examples=max(50, EXAMPLES // 5), deadline=None, derandomize=True)
    @given(st.binary(max_size=400))
    def run(payload):
        _read(ext, payload)

    run()
