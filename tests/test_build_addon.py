"""Build the linux-x64 extension zip with build_addon.py and check what is inside.

Reuses wheels/ when it already holds the linux-x64 wheels (offline, about 3 s);
otherwise downloads them (pip; torch's CPU build comes from the local find-links).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

build_addon = pytest.importorskip("build_addon")


@pytest.fixture(scope="module")
def built(linux_extension_build):
    return linux_extension_build


def test_manifest_source_is_valid():
    data = tomllib.loads((ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))
    assert data["schema_version"] == "1.0.0"
    assert data["id"] == "lsmplify_blender"
    assert data["type"] == "add-on"
    assert len(data["tagline"]) <= 64 and data["tagline"][-1].isalnum()
    assert data["license"] == ["SPDX:GPL-3.0-or-later"]
    assert "files" in data["permissions"]


def test_linux_zip_contents_and_validate(built):
    out, log = built
    zips = sorted(out.glob("lsmplify_blender-*-linux_x64.zip"))
    assert len(zips) == 1, list(out.iterdir())
    names = set(zipfile.ZipFile(zips[0]).namelist())
    for required in ("blender_manifest.toml", "__init__.py", "core/body_model.py",
                     "core/data/open_model.npz"):
        assert required in names, required
    assert not any("__pycache__" in n for n in names)
    wheels = [n for n in names if n.startswith("wheels/") and n.endswith(".whl")]
    for pkg in ("torch-2.13.0+cpu-", "smplx-0.1.28-", "scipy-1.17.1-"):
        assert any(n.startswith("wheels/" + pkg) for n in wheels), pkg
    assert not any(n.lower().startswith("wheels/numpy-") for n in wheels)
    assert not any(n.lower().startswith("wheels/nvidia") for n in wheels)

    manifest = tomllib.loads(zipfile.ZipFile(zips[0]).read("blender_manifest.toml").decode())
    assert sorted(manifest["wheels"]) == sorted("./" + n for n in wheels)
    assert manifest["platforms"] == ["linux-x64"]

    assert f"[validate] OK {zips[0].name}" in log
    # And validate once more, independently of the build script.
    builder = build_addon.find_builder()
    proc = subprocess.run([sys.executable, str(builder), "validate", str(zips[0]),
                           f"--valid-tags={build_addon.find_valid_tags(builder)}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
