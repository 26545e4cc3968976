#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build the LSMPLify Blender extension zips, one per platform.

Usage::

    .venv/bin/python build_addon.py [--platform linux-x64 windows-x64 macos-arm64]
                                    [--python 3.11|3.13] [--out dist] [--no-download]

Steps:

1. ``pip download --only-binary=:all: --no-deps`` into ``wheels/`` the wheels the add-on
   bundles for each chosen platform: torch 2.13.0 (the ``+cpu`` build on Linux), scipy and
   the torch dependencies that ``import torch`` loads (sympy, mpmath, typing-extensions).
   Never numpy: Blender ships it.
2. Audit the chosen wheels' licences against ``WHEEL_LICENCES`` (below): a wheel that is
   not in that table, or whose METADATA no longer says what the table recorded, stops the
   build with a message saying what to check.
3. Stage in a temporary folder the ``lsmplify_blender/`` package contents (``__init__.py``
   next to the manifest; no ``research`` package, tests or tools), the manifest with
   ``platforms``/``wheels`` written for the staged wheels, the wheels under ``./wheels/``
   and ``THIRD_PARTY_NOTICES``: the repository's data notices followed by every bundled
   wheel's own licence files, copied out of the wheels.
4. Run Blender's extension builder (``blender_ext.py`` from the bpy wheel, or
   ``--builder``): ``build --split-platforms`` into ``--out``, then ``validate`` on each zip.

``--no-download`` uses whatever wheels are already in ``wheels/`` (offline rebuilds).

Licence: the add-on is GPL-3.0-or-later; everything bundled must be redistributable under
terms compatible with it (permissive licences, or the GCC runtime library exception). The
SMPL forward pass is the add-on's own code, so no body-model library is bundled.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

from packaging import tags as ptags
from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from tools.pins import pin, version  # requirements.txt: the one home of the version pins

ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = ROOT / "lsmplify_blender"
MANIFEST = ROOT / "blender_manifest.toml"
WHEELS_DIR = ROOT / "wheels"
LOCAL_WHEELS = Path("/opt/wheels")  # pip's configured find-links on the build machine

PLATFORMS = ("linux-x64", "windows-x64", "macos-arm64")
PYTHONS = ("3.11", "3.13")

# Wheel platform tags per Blender platform, most specific first (pip gets all of them).
# Blender 4.2+ needs glibc 2.28 on Linux; torch 2.13 on macOS needs macOS 14.
PLATFORM_TAGS = {
    "linux-x64": [f"manylinux_2_{v}_x86_64" for v in range(28, 16, -1)] + ["manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": [f"macosx_{v}_0_arm64" for v in range(14, 10, -1)],
}

# Marker environment per Blender platform (to check the bundled wheels' own requirements).
MARKER_ENV = {
    "linux-x64": {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
    },
    "windows-x64": {
        "sys_platform": "win32",
        "platform_system": "Windows",
        "platform_machine": "AMD64",
        "os_name": "nt",
    },
    "macos-arm64": {
        "sys_platform": "darwin",
        "platform_system": "Darwin",
        "platform_machine": "arm64",
        "os_name": "posix",
    },
}

# Blender versions per bundled Python (blender_version_max is exclusive).
BLENDER_RANGE = {"3.11": ("4.2.0", "5.1.0"), "3.13": ("5.1.0", None)}

# torch's requirements that ``import torch`` and the add-on's code paths load (sympy and
# mpmath: torch's symbolic shapes, imported on the first solve; typing-extensions: torch's
# own import).
TORCH_DEPS = ["sympy", "mpmath", "typing-extensions"]
# torch's other declared requirements: loaded only by torch.compile / inductor (networkx,
# jinja2, MarkupSafe), torch.hub and checkpoint I/O (filelock, fsspec) and C++ extension
# builds (setuptools), none of which the add-on uses. Not bundled (tests run the installed
# add-on with them made unimportable).
TORCH_DEPS_NOT_BUNDLED = {"networkx", "jinja2", "markupsafe", "filelock", "fsspec", "setuptools"}
NEVER_BUNDLE = {"numpy"}  # Blender ships numpy.

# Every wheel the zip may bundle: the licence its METADATA states (SPDX), a string that the
# METADATA licence fields must contain (so a release that changes licence is caught), and
# where the licence text comes from (all of these are copied into THIRD_PARTY_NOTICES).
# Read from the wheels' METADATA and licence files (torch 2.13.0+cpu, scipy 1.17.1,
# sympy 1.14.0, mpmath 1.4.1, typing_extensions 4.16.0; audited 2026-12-01). To bundle
# another wheel: read its licence, check that GPL-3.0-or-later code may redistribute it,
# and add a row.
WHEEL_LICENCES = {
    # torch's own code is BSD-3-Clause (its LICENSE); the expression covers the bundled third_party code
    "torch": (
        "Apache-2.0 AND Apache-2.0 WITH LLVM-exception AND BSD-2-Clause AND BSD-3-Clause AND BSL-1.0 AND MIT",
        "Apache-2.0 AND Apache-2.0 WITH LLVM-exception AND BSD-2-Clause AND BSD-3-Clause AND BSL-1.0 AND MIT",
        "torch-*.dist-info/licenses/LICENSE and its 97 third_party/**/LICENSE* files",
    ),
    # the Linux wheel's LICENSE.txt also lists its bundled libraries: OpenBLAS BSD-3-Clause,
    # LAPACK BSD-3-Clause-Open-MPI, GCC runtime GPL-3.0-or-later WITH GCC-exception-3.1,
    # libquadmath LGPL-2.1-or-later
    "scipy": (
        "BSD-3-Clause AND (bundled libraries, see its LICENSE.txt)",
        "BSD License",
        "scipy-*.dist-info/LICENSE.txt (scipy's and each bundled library's)",
    ),
    "sympy": ("BSD-3-Clause", "BSD", "sympy-*.dist-info/licenses/LICENSE, AUTHORS"),
    "mpmath": ("BSD-3-Clause", "BSD-3-Clause", "mpmath-*.dist-info/licenses/LICENSE"),
    "typing-extensions": ("PSF-2.0", "PSF-2.0", "typing_extensions-*.dist-info/licenses/LICENSE"),
}
NOTICES_NAME = "THIRD_PARTY_NOTICES"
# Left out of the staged package: code the add-on never imports at run time.
STAGE_EXCLUDE = (
    "__pycache__",
    "*.pyc",
    "*.pyo",
    ".pytest_cache",
    "*.whl",
    "blender_manifest.toml",
    "research",
    "tests",
    "tools",
)


def requirements(python: str) -> list[str]:
    """Pip requirement strings for one Python version."""
    reqs = [pin("torch")]
    reqs.append(pin("scipy") if python == "3.11" else "scipy")  # the pinned scipy: last for 3.11
    return reqs + TORCH_DEPS


def find_builder() -> Path:
    """Blender's extension builder inside the bpy wheel of this interpreter."""
    for entry in sys.path:
        hits = sorted(
            glob.glob(
                os.path.join(
                    entry, "bpy", "*", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py"
                )
            )
        )
        if hits:
            return Path(hits[-1])
    raise SystemExit("blender_ext.py not found: install bpy in this Python or pass --builder")


def find_valid_tags(builder: Path) -> str:
    """Blender's fixed tag list (tags.py next to the builder's bpy scripts), or '' if absent."""
    scripts = builder.parents[3]  # .../bpy/<ver>/scripts
    tags_py = scripts / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    return str(tags_py) if tags_py.is_file() else ""


def supported_tags(platform: str, python: str) -> list[ptags.Tag]:
    ver = tuple(int(x) for x in python.split("."))
    plats = PLATFORM_TAGS[platform]
    return list(ptags.cpython_tags(ver, platforms=plats)) + list(
        ptags.compatible_tags(ver, interpreter=f"cp{ver[0]}{ver[1]}", platforms=plats)
    )


def pip_download(platform: str, python: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        "--no-deps",
        "--implementation",
        "cp",
        "--python-version",
        python,
        "-d",
        str(WHEELS_DIR),
    ]
    for tag in PLATFORM_TAGS[platform]:
        cmd += ["--platform", tag]
    if platform == "linux-x64":
        # The CPU build of torch, not the CUDA one from PyPI (which pulls nvidia-* wheels).
        cmd += ["--platform", "linux_x86_64"]
    cmd += requirements(python)
    print(f"[download] {platform} / Python {python}", flush=True)
    subprocess.run(cmd, check=True)


def select_wheels(platform: str, python: str) -> list[Path]:
    """Pick, from wheels/, the best wheel of each required package for one target."""
    supported = supported_tags(platform, python)
    rank = {t: i for i, t in enumerate(supported)}
    wanted = {}
    for req in requirements(python):
        r = Requirement(req)
        wanted[canonicalize_name(r.name)] = r.specifier
    best: dict[str, tuple] = {}
    for whl in sorted(WHEELS_DIR.glob("*.whl")):
        try:
            name, version, _build, wtags = parse_wheel_filename(whl.name)
        except (InvalidWheelFilename, InvalidVersion):  # not a wheel we could bundle: ignored
            continue
        if name in NEVER_BUNDLE or name not in wanted:
            continue
        if not wanted[name].contains(version, prereleases=False) and not (
            wanted[name].contains(Version(version.public), prereleases=False)
        ):
            continue
        # linux_x86_64 is only acceptable for the local torch CPU build.
        ranks = [rank[t] for t in wtags if t in rank]
        if not ranks and not (
            platform == "linux-x64"
            and name == "torch"
            and version.local
            and any(
                t.platform == "linux_x86_64" and t.interpreter == f"cp{python.replace('.', '')}"
                for t in wtags
            )
        ):
            continue
        is_cpu = 1 if (version.local or "").startswith("cpu") else 0
        key = (
            is_cpu if name == "torch" and platform == "linux-x64" else 0,
            version,
            -min(ranks, default=len(rank)),
        )
        if name not in best or key > best[name][0]:
            best[name] = (key, whl)
    missing = sorted(set(wanted) - set(best))
    if missing:
        raise SystemExit(
            f"no wheel in {WHEELS_DIR} for {platform} / Python {python}: "
            f"{', '.join(missing)} (run without --no-download)"
        )
    return [best[n][1] for n in sorted(best)]


def ensure_cpu_torch(python: str) -> None:
    """If pip only fetched a CUDA torch for Linux, copy the +cpu build from /opt/wheels."""
    cp, torch = "cp" + python.replace(".", ""), version("torch")
    if list(WHEELS_DIR.glob(f"torch-{torch}+cpu-{cp}-{cp}-*linux*.whl")):
        return
    local = sorted(LOCAL_WHEELS.glob(f"torch-{torch}+cpu-{cp}-{cp}-*linux*x86_64.whl"))
    if local:
        print(f"[download] using local CPU torch {local[-1].name}", flush=True)
        shutil.copy2(local[-1], WHEELS_DIR / local[-1].name)
    else:
        print(
            f"[warning] no torch {torch}+cpu wheel found for Linux: bundling the PyPI build "
            "(CUDA), whose nvidia-* dependencies are NOT bundled",
            file=sys.stderr,
        )


def _dist_info_files(zf: zipfile.ZipFile) -> tuple[str, list[str]]:
    """A wheel's METADATA text and its licence files (``*.dist-info/**/LICEN[CS]E*``, COPYING,
    NOTICE, AUTHORS), top-level dist-info only (not vendored packages' copies)."""
    names = zf.namelist()
    meta = next((n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
    text = zf.read(meta).decode("utf-8", "replace") if meta else ""
    dist_info = meta.rsplit("/", 1)[0] + "/" if meta else None
    keys = ("LICEN", "COPYING", "NOTICE", "AUTHORS")
    files = [
        n
        for n in names
        if dist_info
        and n.startswith(dist_info)
        and not n.endswith("/")
        and any(k in n.rsplit("/", 1)[-1].upper() for k in keys)
    ]
    return text, sorted(files)


def _metadata_licence(meta_text: str) -> str:
    """The licence fields of a METADATA header (License-Expression, License, classifiers)."""
    header = meta_text.split("\n\n", 1)[0]
    return "\n".join(
        line
        for line in header.splitlines()
        if line.startswith(("License-Expression:", "License:", "Classifier: License"))
    )


def audit_licences(wheels: list[Path]) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Check every wheel against ``WHEEL_LICENCES``; return name -> (SPDX, [(file, text)]).

    Stops the build (SystemExit) when a wheel is not in the table, its METADATA no longer
    says what the table recorded, or it carries no licence file to reproduce.
    """
    out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    problems = []
    for whl in wheels:
        name = canonicalize_name(parse_wheel_filename(whl.name)[0])
        with zipfile.ZipFile(whl) as zf:
            meta, files = _dist_info_files(zf)
            texts = [(f, zf.read(f).decode("utf-8", "replace")) for f in files]
        fields = _metadata_licence(meta)
        if name not in WHEEL_LICENCES:
            problems.append(
                f"{whl.name}: no known redistributable licence (its METADATA says "
                f"{fields.strip() or 'nothing'!r}). Read its licence and, if GPL-3.0-or-later "
                f"code may redistribute it, add it to WHEEL_LICENCES in build_addon.py; "
                f"otherwise do not bundle it."
            )
            continue
        spdx, must_say, _where = WHEEL_LICENCES[name]
        if must_say not in fields:
            problems.append(
                f"{whl.name}: its METADATA licence fields {fields.strip()!r} no longer contain "
                f"{must_say!r}, as recorded in WHEEL_LICENCES: audit this release's licence again."
            )
        if not texts:
            problems.append(f"{whl.name}: carries no licence file to copy into {NOTICES_NAME}.")
        out[name] = (spdx, texts)
    if problems:
        raise SystemExit("licence audit failed:\n  " + "\n  ".join(problems))
    return out


def third_party_notices(wheels: list[Path]) -> str:
    """The zip's THIRD_PARTY_NOTICES: the repository's data notices, then each bundled
    wheel's licence files as they are in the wheel."""
    audited = audit_licences(wheels)
    parts = [
        (ROOT / NOTICES_NAME).read_text(encoding="utf-8").rstrip("\n"),
        "",
        "=" * 90,
        "4. Python packages bundled under wheels/ (licence files copied from each wheel)",
        "=" * 90,
    ]
    by_name = {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in wheels}
    for name in sorted(audited):
        spdx, texts = audited[name]
        parts += ["", "-" * 90, f"{by_name[name].name}", f"Licence: {spdx}", "-" * 90]
        for fname, text in texts:
            parts += ["", f"[{fname}]", "", text.rstrip("\n")]
    return "\n".join(parts) + "\n"


def check_wheel_requirements(wheels: list[Path], platform: str, python: str) -> list[str]:
    """Requirements of the bundled wheels (for this target) that nothing bundled satisfies."""
    env = dict(
        MARKER_ENV[platform],
        python_version=python,
        python_full_version=python + ".0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        extra="",
    )
    have = {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in wheels}
    problems = []
    for whl in wheels:
        with zipfile.ZipFile(whl) as zf:
            meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
            text = zf.read(meta).decode("utf-8", "replace") if meta else ""
        for line in text.splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            name = canonicalize_name(req.name)
            if name in have or name in NEVER_BUNDLE or name in TORCH_DEPS_NOT_BUNDLED:
                continue
            problems.append(f"{whl.name} needs {req} ({platform}, Python {python})")
    return problems


def _toml_list(values: list[str]) -> str:
    if not values:
        return "[]"
    return "[\n" + "".join(f'  "{v}",\n' for v in values) + "]"


def _set_key(text: str, key: str, value: str) -> str:
    """Set a top-level key (before the first [table]) in TOML text, replacing any old one."""
    head, sep, tail = text.partition("\n[")
    pattern = re.compile(
        rf"^{re.escape(key)}\s*=\s*(\[.*?\]|\"[^\"\n]*\")[^\n]*\n?", re.MULTILINE | re.DOTALL
    )
    if pattern.search(head):
        head = pattern.sub(lambda _m: f"{key} = {value}\n", head, count=1)
    else:
        head = head.rstrip("\n") + f"\n{key} = {value}\n"
    return head + ("\n" + sep.lstrip("\n") + tail if sep else "")


def staged_manifest(platforms: list[str], wheel_names: list[str], python: str) -> str:
    text = MANIFEST.read_text(encoding="utf-8")
    vmin, vmax = BLENDER_RANGE[python]
    text = _set_key(text, "blender_version_min", f'"{vmin}"')
    if vmax:
        text = _set_key(text, "blender_version_max", f'"{vmax}"')
    text = _set_key(text, "platforms", _toml_list(platforms))
    text = _set_key(text, "wheels", _toml_list([f"./wheels/{n}" for n in wheel_names]))
    data = tomllib.loads(text)  # sanity: the result parses and says what we meant
    assert data["wheels"] == [f"./wheels/{n}" for n in wheel_names]
    assert data["platforms"] == platforms
    assert "files" in data.get("permissions", {})
    return text


def stage(stage_dir: Path, platforms: list[str], wheels: list[Path], python: str) -> None:
    notices = third_party_notices(wheels)  # audits first: nothing is staged for a refused wheel
    shutil.copytree(PACKAGE_DIR, stage_dir, ignore=shutil.ignore_patterns(*STAGE_EXCLUDE))
    (stage_dir / NOTICES_NAME).write_text(notices, encoding="utf-8")
    (stage_dir / "wheels").mkdir()
    for whl in wheels:
        shutil.copy2(whl, stage_dir / "wheels" / whl.name)
    (stage_dir / "blender_manifest.toml").write_text(
        staged_manifest(platforms, [w.name for w in wheels], python), encoding="utf-8"
    )


def run_builder(builder: Path, args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(builder)] + args
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    if out:
        print(out, flush=True)
    return proc


def build(
    platforms: list[str], python: str, out: Path, download: bool, builder: Path | None = None
) -> list[Path]:
    t0 = time.perf_counter()
    builder = builder or find_builder()
    valid_tags = find_valid_tags(builder)
    WHEELS_DIR.mkdir(exist_ok=True)
    chosen: dict[str, Path] = {}
    for platform in platforms:
        if download:
            pip_download(platform, python)
            if platform == "linux-x64":
                ensure_cpu_torch(python)
        picked = select_wheels(platform, python)
        for problem in check_wheel_requirements(picked, platform, python):
            print(f"[warning] {problem}", file=sys.stderr)
        for whl in picked:
            chosen[whl.name] = whl
    wheels = [chosen[n] for n in sorted(chosen)]
    assert not any(parse_wheel_filename(w.name)[0] in NEVER_BUNDLE for w in wheels)

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    version = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))["version"]
    pytag = "py" + python.replace(".", "")
    base = out / f"lsmplify_blender-{version}-{pytag}.zip"
    expected = [out / f"{base.stem}-{p.replace('-', '_')}.zip" for p in platforms]
    for path in expected:
        path.unlink(missing_ok=True)

    with tempfile.TemporaryDirectory(prefix="lsmplify_build_") as tmp:
        stage_dir = Path(tmp) / "lsmplify_blender"
        stage(stage_dir, platforms, wheels, python)
        proc = run_builder(
            builder,
            [
                "build",
                "--source-dir",
                str(stage_dir),
                "--output-filepath",
                str(base),
                "--split-platforms",
                f"--valid-tags={valid_tags}",
            ],
        )
        if proc.returncode != 0:
            raise SystemExit(f"extension build failed (exit {proc.returncode})")

    missing = [p for p in expected if not p.is_file()]
    if missing:
        raise SystemExit(f"builder did not write: {', '.join(map(str, missing))}")
    for path in expected:
        proc = run_builder(builder, ["validate", str(path), f"--valid-tags={valid_tags}"])
        if proc.returncode != 0:
            raise SystemExit(f"validate failed for {path} (exit {proc.returncode})")
        print(f"[validate] OK {path.name}", flush=True)

    for path in expected:
        print(f"{path}  {path.stat().st_size / 1e6:.1f} MB")
    print(f"[done] {len(expected)} zip(s) in {time.perf_counter() - t0:.1f} s")
    return expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--platform",
        nargs="+",
        action="extend",
        choices=PLATFORMS,
        help="Blender platform(s) to build for (default: linux-x64)",
    )
    parser.add_argument(
        "--python",
        choices=PYTHONS,
        default="3.11",
        help="Python of the target Blender: 3.11 (4.2-5.0) or 3.13 (5.1+)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="use the wheels already in wheels/ (offline rebuild)",
    )
    parser.add_argument(
        "--builder",
        type=Path,
        default=None,
        help="path to Blender's blender_ext.py (default: from the bpy wheel)",
    )
    args = parser.parse_args(argv)
    platforms = list(dict.fromkeys(args.platform or ["linux-x64"]))
    build(platforms, args.python, args.out, not args.no_download, args.builder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
