"""Build the linux-x64 extension zip with build_addon.py and check what is inside.

Reuses wheels/ when it already holds the linux-x64 wheels (offline, about 3 s);
otherwise downloads them (pip; torch's CPU build comes from the local find-links).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
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
    for required in (
        "blender_manifest.toml",
        "__init__.py",
        "core/body_model.py",
        "core/data/open_model.npz",
    ):
        assert required in names, required
    assert not any("__pycache__" in n for n in names)
    wheels = [n for n in names if n.startswith("wheels/") and n.endswith(".whl")]
    for pkg in ("torch-2.13.0+cpu-", "scipy-1.17.1-", "sympy-", "mpmath-", "typing_extensions-"):
        assert any(n.startswith("wheels/" + pkg) for n in wheels), pkg
    assert not any(n.lower().startswith("wheels/numpy-") for n in wheels)
    assert not any(n.lower().startswith("wheels/nvidia") for n in wheels)
    # no SMPL body-model library (its licence forbids redistribution), and none of torch's
    # requirements that the add-on never loads
    dropped = ("smplx", "chumpy", *build_addon.TORCH_DEPS_NOT_BUNDLED)
    assert not any(n[len("wheels/") :].lower().startswith(d) for n in wheels for d in dropped), (
        wheels
    )
    assert not any(n.split("/")[0] in ("research", "tests", "tools") for n in names)

    manifest = tomllib.loads(zipfile.ZipFile(zips[0]).read("blender_manifest.toml").decode())
    assert sorted(manifest["wheels"]) == sorted("./" + n for n in wheels)
    assert manifest["platforms"] == ["linux-x64"]

    assert f"[validate] OK {zips[0].name}" in log
    # And validate once more, independently of the build script.
    builder = build_addon.find_builder()
    proc = subprocess.run(
        [
            sys.executable,
            str(builder),
            "validate",
            str(zips[0]),
            f"--valid-tags={build_addon.find_valid_tags(builder)}",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zip_carries_the_notices_with_every_bundled_wheels_licence(built):
    out, _ = built
    (zip_path,) = sorted(out.glob("lsmplify_blender-*-linux_x64.zip"))
    with zipfile.ZipFile(zip_path) as zf, tempfile.TemporaryDirectory() as tmp:
        notices = zf.read(build_addon.NOTICES_NAME).decode("utf-8")
        wheels = [n for n in zf.namelist() if n.startswith("wheels/") and n.endswith(".whl")]
        for n in wheels:
            zf.extract(n, tmp)
            with zipfile.ZipFile(Path(tmp) / n) as whl:
                _, files = build_addon._dist_info_files(whl)
                assert files, n
                for f in files:  # each licence file of each wheel, verbatim
                    assert whl.read(f).decode("utf-8", "replace").rstrip("\n") in notices, (n, f)
            assert Path(n).name in notices
    # the data notices: open model, network weights, demo clip
    for line in (
        "Apache License",
        "CC0 1.0",
        "mocap.cs.cmu.edu",
        "EIA-0196217",
        "Xue Bin Peng",
        "Yuki Koyama",
        "core/data/network.pt",
        "core/data/demo/cmu_131_01.bvh",
    ):
        assert line in notices, line


def _fake_wheel(
    folder: Path, name: str, version: str, licence_line: str, licence_file: bool = True
) -> Path:
    """A minimal but well-formed wheel (METADATA, WHEEL, RECORD) with the given licence field."""
    whl = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{licence_line}\n\n",
        )
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        if licence_file:
            zf.writestr(f"{info}/LICENSE", "All rights reserved.\n")
        zf.writestr(f"{info}/RECORD", "")
    return whl


def test_build_refuses_a_wheel_without_a_known_redistributable_licence(tmp_path):
    unknown = _fake_wheel(
        tmp_path, "bodymodel_research", "0.1", "License: non-commercial research only"
    )
    with pytest.raises(
        SystemExit,
        match=re.escape("bodymodel_research-0.1-py3-none-any.whl: no known redistributable"),
    ):
        build_addon.audit_licences([unknown])
    # a known package whose new release changed its licence is refused too
    relicensed = _fake_wheel(
        tmp_path, "mpmath", "9.0", "License-Expression: LicenseRef-Proprietary"
    )
    with pytest.raises(SystemExit, match=r"mpmath-9\.0.*no longer contain 'BSD-3-Clause'"):
        build_addon.audit_licences([relicensed])
    # and nothing is staged for them
    stage_dir = tmp_path / "stage"
    with pytest.raises(SystemExit, match="licence audit failed"):
        build_addon.stage(stage_dir, ["linux-x64"], [unknown], "3.11")
    assert not stage_dir.exists()


def test_licence_table_covers_everything_the_build_asks_for():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    for python in build_addon.PYTHONS:
        names = {canonicalize_name(Requirement(r).name) for r in build_addon.requirements(python)}
        assert names <= set(build_addon.WHEEL_LICENCES), names - set(build_addon.WHEEL_LICENCES)
        assert not names & build_addon.TORCH_DEPS_NOT_BUNDLED
    text = (ROOT / "build_addon.py").read_text(encoding="utf-8").lower()
    assert "smplx" not in text and "chumpy" not in text
