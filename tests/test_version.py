"""One version number: ``lsmplify_blender.__version__``, the built package metadata (setuptools
reads it from pyproject.toml's dynamic version) and blender_manifest.toml all say the same."""

import re
import tomllib
from pathlib import Path

import pytest

import lsmplify_blender

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_version_is_the_package_version():
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))
    assert manifest["version"] == lsmplify_blender.__version__


def test_version_is_semver():
    # Blender's extension platform requires MAJOR.MINOR.PATCH, which is also valid PEP 440.
    assert re.fullmatch(r"\d+\.\d+\.\d+", lsmplify_blender.__version__)


def test_pyproject_takes_the_version_from_the_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"], "a second version number in pyproject.toml"
    assert "version" in pyproject["project"]["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "lsmplify_blender.__version__"}


def test_built_metadata_has_the_package_version(tmp_path, monkeypatch):
    """The metadata setuptools actually builds (what `pip install -e .` records)."""
    build_meta = pytest.importorskip("setuptools.build_meta")
    monkeypatch.chdir(ROOT)
    dist_info = build_meta.prepare_metadata_for_build_wheel(str(tmp_path))
    metadata = (tmp_path / dist_info / "METADATA").read_text(encoding="utf-8")
    fields = dict(line.split(": ", 1) for line in metadata.splitlines() if ": " in line)
    assert fields["Name"] == "lsmplify-blender"
    assert fields["Version"] == lsmplify_blender.__version__
