"""The core must run without Blender: importing all of it never imports bpy."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import lsmplify_blender.core as core

ROOT = Path(__file__).resolve().parents[1]


def test_core_imports_without_bpy():
    mods = [m.name for m in pkgutil.walk_packages(core.__path__, "lsmplify_blender.core.")]
    assert len(mods) >= 10
    code = (
        "import sys, importlib\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "print('bpy' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_no_bpy_import_statements_in_core():
    offenders = [
        str(p)
        for p in (ROOT / "lsmplify_blender" / "core").rglob("*.py")
        if any(
            line.strip().startswith(("import bpy", "from bpy"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []
