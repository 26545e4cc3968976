"""The project's version pins, read from ``requirements.txt``: their one home.

The Makefile, ``tools/smoke_bpy42.sh`` and ``build_addon.py`` take their pins from here, so
they agree with ``requirements.txt`` by construction; ``pyproject.toml``'s extras name the
packages without versions and are installed with ``-c requirements.txt``.

Command line (stdlib only, so any ``python3`` runs it before a venv exists)::

    python3 tools/pins.py torch scipy     # -> torch==2.13.0 scipy==1.17.1
    python3 tools/pins.py --version torch # -> 2.13.0
    .venv/bin/python tools/pins.py --installed ruff mypy  # exit 0 iff this Python has those pins
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements.txt"

# "name==version", optionally followed by a comment; names compared in PEP 503 normal form.
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)\s*(?:#.*)?$")


def normalize(name: str) -> str:
    """PEP 503 normal form of a distribution name (``Typing_Extensions`` -> ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """{normalized name: exact version} for every ``name==version`` line of a requirements file.

    Lines that are not exact pins (comments, blank lines, options) are skipped; a name pinned
    twice is an error, since then the file no longer says one thing."""
    pins: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = _PIN.match(line)
        if not m:
            continue
        name = normalize(m.group(1))
        if name in pins:
            raise ValueError(f"{path}:{lineno}: {m.group(1)} is pinned twice")
        pins[name] = m.group(2)
    return pins


def version(name: str, path: Path = REQUIREMENTS) -> str:
    """The pinned version of one package (KeyError naming the file if it has no pin)."""
    pins = read_pins(path)
    try:
        return pins[normalize(name)]
    except KeyError:
        raise KeyError(f"{name} has no 'name==version' pin in {path}") from None


def pin(name: str, path: Path = REQUIREMENTS) -> str:
    """The pip requirement string ``name==version`` of one package."""
    return f"{name}=={version(name, path)}"


def installed_at_pin(names: list[str], path: Path = REQUIREMENTS) -> bool:
    """Whether this interpreter has each package installed at exactly its pinned version."""
    from importlib import metadata

    for name in names:
        try:
            if metadata.version(name) != version(name, path):
                return False
        except metadata.PackageNotFoundError:
            return False
    return True


def main(argv: list[str]) -> int:
    mode = argv[0] if argv and argv[0] in ("--version", "--installed") else ""
    names = argv[1:] if mode else argv
    if not names:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if mode == "--installed":
            return 0 if installed_at_pin(names) else 1
        out = [version(n) if mode == "--version" else pin(n) for n in names]
    except KeyError as exc:
        print(f"pins: {exc.args[0]}", file=sys.stderr)
        return 1
    print(" ".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
