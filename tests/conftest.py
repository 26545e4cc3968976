import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_MOCAP = ROOT.parent / "shared" / "data" / "mocap"

from lsmplify_blender.core.body_model import BodyModel, load_model_data
from lsmplify_blender.core.rotations import axis_angle_to_matrix

# Per-joint spread (radians) of random test poses: a plausible range of motion, not a prior.
_POSE_STD = np.array(
    [
        0.0,
        0.5,
        0.5,
        0.25,
        0.6,
        0.6,
        0.15,
        0.3,
        0.3,
        0.15,
        0.2,
        0.2,
        0.3,
        0.2,
        0.2,
        0.3,
        0.6,
        0.6,
        0.6,
        0.6,
        0.4,
        0.4,
        0.3,
        0.3,
    ]
)


def random_pose(n: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """(n, 24, 3, 3) random poses: any root orientation, limbs within a plausible range."""
    g = torch.Generator().manual_seed(seed)
    aa = (
        torch.randn(n, 24, 3, generator=g, dtype=torch.float64)
        * torch.as_tensor(_POSE_STD)[:, None]
        * scale
    )
    # knees and elbows mostly flex one way, as real ones do
    aa[:, 4:6, 0] = torch.rand(n, 2, generator=g, dtype=torch.float64) * 1.6
    aa[:, 18, 1] = -torch.rand(n, generator=g, dtype=torch.float64) * 1.8
    aa[:, 19, 1] = torch.rand(n, generator=g, dtype=torch.float64) * 1.8
    root = torch.randn(n, 3, generator=g, dtype=torch.float64)
    aa[:, 0] = (
        root
        / root.norm(dim=-1, keepdim=True)
        * torch.rand(n, 1, generator=g, dtype=torch.float64)
        * np.pi
    )
    return axis_angle_to_matrix(aa).float()


@pytest.fixture(scope="session")
def model_data():
    return load_model_data()


@pytest.fixture(scope="session")
def model(model_data):
    return BodyModel(model_data)


def smooth_pose(n: int, seed: int = 0, keys: int = 4, scale: float = 1.0) -> torch.Tensor:
    """(n, 24, 3, 3) a smooth motion: axis-angle interpolated between random key poses."""
    from lsmplify_blender.core.rotations import matrix_to_axis_angle

    key = matrix_to_axis_angle(random_pose(keys, seed, scale).double())
    t = torch.linspace(0, keys - 1, n, dtype=torch.float64)
    i0 = t.floor().long().clamp(max=keys - 2)
    f = (t - i0)[:, None, None]
    f = f * f * (3 - 2 * f)  # smoothstep: no velocity jumps at the keys
    return axis_angle_to_matrix(key[i0] * (1 - f) + key[i0 + 1] * f).float()


@pytest.fixture(scope="session")
def linux_extension_build(tmp_path_factory):
    """The linux-x64 extension zip built once per test run by build_addon.py: (dist dir, log).

    Reuses the wheels in wheels/ when they are there (--no-download), else downloads them.
    """
    import subprocess

    build_addon = pytest.importorskip("build_addon")
    try:
        build_addon.find_builder()
    except SystemExit:
        pytest.skip("bpy wheel (Blender's extension builder) not installed")
    try:
        build_addon.select_wheels("linux-x64", "3.11")
        have_wheels = True
    except SystemExit:
        have_wheels = False
    out = tmp_path_factory.mktemp("dist")
    cmd = [
        sys.executable,
        str(ROOT / "build_addon.py"),
        "--platform",
        "linux-x64",
        "--python",
        "3.11",
        "--out",
        str(out),
    ] + (["--no-download"] if have_wheels else [])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, proc.stdout + proc.stderr
