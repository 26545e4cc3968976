"""Checks the command line makes before any work, and its last-resort error handler.

Every option is validated up front (a wrong value is an ``OptionError`` naming the flag),
``--out`` may never name one of the inputs (also through a symlink) and its folder must
take a new file before the solve starts, so no work is lost to an unwritable path. The
JSON summary never holds a bare NaN. An exception that is not the project's own ends in
one line and a log file holding the traceback, exit status 2.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import traceback
from pathlib import Path

from .errors import OptionError, OutputError

MAX_FPS = 1000.0  # mocap rarely exceeds 480 Hz; beyond this auto-smoothing kernels get huge
MAX_SMOOTH_SECONDS = 5.0
MAX_REFINE = 10_000
MAX_PASSES = 100


def _number(value, flag: str, lo: float, hi: float, integer: bool = False, unit: str = ""):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionError(f"{flag} {value!r}: expected a number.")
    if integer and value != int(value):
        raise OptionError(f"{flag} {value}: expected a whole number.")
    if value < lo:
        raise OptionError(f"{flag} must be at least {lo:g}{unit}, not {value:g}.")
    if value > hi:
        raise OptionError(
            f"{flag} {value:g} is more than {hi:g}{unit}, beyond any real take; give a value "
            f"in {lo:g}..{hi:g}."
        )
    return value


def check_take_options(args) -> None:
    """Ranges of the options that shape a solve (``convert`` and ``batch``)."""
    if getattr(args, "fps", None) is not None:
        _number(args.fps, "--fps", 1e-3, MAX_FPS, unit=" fps")
    _number(getattr(args, "refine", 0), "--refine", 0, MAX_REFINE, integer=True)
    _number(getattr(args, "passes", 0), "--passes", 0, MAX_PASSES, integer=True)
    if getattr(args, "chunk", None) is not None:
        _number(args.chunk, "--chunk", 1, 10**7, integer=True, unit=" frame(s)")
    smooth = getattr(args, "smooth", "auto")
    if smooth != "auto":
        _number(smooth, "--smooth", 0, MAX_SMOOTH_SECONDS, unit=" s")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def output_path(out, protect: dict[str, str | os.PathLike | None]) -> Path:
    """The .npz ``--out`` will be written as, after checking it can be, before any work.

    ``protect`` maps a flag name to a path the run reads (the input, --model, --init,
    --asf): ``--out`` naming any of them is refused, so a run never replaces its inputs.
    """
    p = Path(os.fspath(out))
    if p.suffix.lower() != ".npz":
        p = p.with_suffix(".npz")
    if len(os.fsencode(p.name)) > 250:
        raise OutputError(
            f"--out: the file name is {len(os.fsencode(p.name))} bytes long; file systems "
            "allow 255. Choose a shorter name."
        )
    for flag, path in protect.items():
        if path and _same_file(p, Path(os.fspath(path))):
            raise OutputError(
                f"--out {p} is the same file as {flag}; writing there would destroy it. "
                "Choose another output name."
            )
    try:
        is_dir = p.is_dir()
    except OSError as exc:
        raise OutputError(f"--out {p}: {exc.strerror or exc}. Choose another path.") from None
    if is_dir:
        raise OutputError(f"--out {p} is a folder; give a file name such as {p / 'result.npz'}.")
    _probe_folder(p)
    return p


def _probe_folder(p: Path) -> None:
    """Create (and remove) a file beside ``p``: proves the folder takes new files now."""
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{p.name[:100]}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise OutputError(
            f"--out {p}: cannot create files in '{parent}' ({why}). Choose a writable "
            "folder (and a path whose folders are folders, not files)."
        ) from None


def json_safe(value):
    """The summary with NaN/inf floats as null: valid JSON for any parser."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def last_resort(exc: BaseException) -> int:
    """One line for an error that is not the project's own; the traceback goes to a log."""
    if isinstance(exc, KeyboardInterrupt):
        print("lsmplify: interrupted; no output was written.", file=sys.stderr)
        return 130
    hints: dict[type[BaseException], str] = {
        MemoryError: "the input is too large for this machine's memory: split the take or use fewer frames",
        RecursionError: "the input is nested too deeply to be a keypoint or model file",
    }
    hint = hints.get(type(exc), "this is a bug in LSMPLify; please report it with the log")
    log = _write_log(exc)
    where = f" (traceback in {log})" if log else ""
    print(
        f"lsmplify: error: {type(exc).__name__}: {str(exc)[:300]}: {hint}{where}", file=sys.stderr
    )
    return 2


def _write_log(exc: BaseException) -> str | None:
    try:
        fd, path = tempfile.mkstemp(prefix="lsmplify-error-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return path
    except OSError:
        return None
