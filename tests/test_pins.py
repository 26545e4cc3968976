"""Version pins in one place: requirements.txt. The readers (tools/pins.py), the package
metadata, the Makefile, the 4.2 smoke script and build_addon.py agree with it."""

import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools import pins

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _requirement_lines(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_requirements_are_exact_pins_only():
    """Every requirement line is `name==version`, so the file says one thing per package."""
    lines = _requirement_lines(pins.REQUIREMENTS)
    read = pins.read_pins()
    assert len(read) == len(lines), f"not all lines are exact pins: {lines}"
    for line in lines:
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==" and read[canonicalize_name(req.name)] == spec.version


def test_every_dependency_and_extra_is_pinned():
    pinned = pins.read_pins()
    project = PYPROJECT["project"]
    extras = [r for reqs in project["optional-dependencies"].values() for r in reqs]
    for text in project["dependencies"] + extras:
        req = Requirement(text)
        if canonicalize_name(req.name) == canonicalize_name(project["name"]):
            continue  # an extra that includes another extra
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} (pyproject.toml) has no pin in requirements.txt"
        # The pinned version satisfies the range the package declares.
        assert req.specifier.contains(pinned[name], prereleases=True), (req, pinned[name])


def test_runtime_dependencies_exclude_smplx():
    """smplx's licence forbids redistribution: it is only the tests' reference."""
    runtime = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    assert "smplx" not in runtime
    assert "smplx" in PYPROJECT["project"]["optional-dependencies"]["test"]


@pytest.mark.parametrize("path", ["Makefile", "tools/smoke_bpy42.sh", "build_addon.py"])
def test_no_hard_coded_pins(path):
    """The Makefile, the smoke script and build_addon.py take their pins from tools/pins.py."""
    text = (ROOT / path).read_text(encoding="utf-8")
    pinned = pins.read_pins()
    for name, ver in pinned.items():
        for hit in re.finditer(rf"{re.escape(name)}(==|-){re.escape(ver)}\b", text, re.IGNORECASE):
            line = text[: hit.start()].count("\n") + 1
            pytest.fail(f"{path}:{line} hard-codes {name} {ver}; read it with tools/pins.py")
    # The smoke script's one own pin (bpy 4.2 LTS) is not a second bpy pin of the main set.
    if path == "tools/smoke_bpy42.sh":
        assert re.findall(r"bpy==([\d.]+)", text) == ["4.2.23"]
        assert pinned["bpy"] != "4.2.23"


def test_build_addon_bundles_the_pinned_versions():
    sys.path.insert(0, str(ROOT))
    import build_addon  # a plain import: failing to import it must fail, not skip

    pinned = pins.read_pins()
    for python in ("3.11", "3.13"):
        for text in build_addon.requirements(python):
            req = Requirement(text)
            for spec in req.specifier:
                assert spec.operator == "=="
                assert pinned[canonicalize_name(req.name)] == spec.version, text


def test_reader_rejects_a_package_pinned_twice(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("numpy==1.26.4\n# comment\nNumPy==1.26.3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="pinned twice"):
        pins.read_pins(req)


def test_reader_names_the_file_for_a_missing_pin(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("torch==2.13.0  # the CPU build\nscipy>=1\n", encoding="utf-8")
    assert pins.pin("Torch", req) == "Torch==2.13.0"
    with pytest.raises(KeyError, match=r"scipy has no 'name==version' pin in .*requirements\.txt"):
        pins.version("scipy", req)


def test_command_line(capsys):
    assert pins.main(["torch", "numpy"]) == 0
    torch, numpy = capsys.readouterr().out.split()
    assert torch == pins.pin("torch") and numpy == pins.pin("numpy")
    assert pins.main(["--version", "pytest"]) == 0
    assert capsys.readouterr().out.strip() == pins.version("pytest")
    # This interpreter runs the suite, so it has the pinned pytest.
    assert pins.main(["--installed", "pytest"]) == 0
    assert pins.main(["no-such-package-pinned"]) == 1
    assert "no-such-package-pinned has no" in capsys.readouterr().err
