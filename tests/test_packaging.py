"""`pip install .` ships every data file the package reads: each file under the package that
is not Python source matches one of pyproject.toml's package-data patterns."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lsmplify_blender"


def test_every_data_file_is_package_data():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["lsmplify_blender"]
    data = [
        p
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert data, "no data files found: the package layout changed"
    missing = [
        str(p.relative_to(ROOT))
        for p in data
        if not any(fnmatch.fnmatch(p.relative_to(PACKAGE).as_posix(), pat) for pat in patterns)
    ]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
