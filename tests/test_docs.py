"""The README's "Layout of the repository" names every module of the package, so a new module
cannot arrive undocumented."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lsmplify_blender"


def _layout_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Layout of the repository\n(.*?)(?=^## )", readme, re.MULTILINE | re.DOTALL)
    assert m, "README.md has no '## Layout of the repository' section"
    return m.group(1)


def test_layout_section_names_every_module():
    section = _layout_section()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        if f"`{path.name}`" not in section:
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"README.md's layout section does not name: {', '.join(missing)}"


def test_layout_section_names_every_subpackage():
    section = _layout_section()
    packages = [p.parent for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE]
    missing = [str(p.relative_to(ROOT)) for p in sorted(packages) if f"{p.name}/`" not in section]
    assert not missing, f"README.md's layout section does not name: {', '.join(missing)}"
