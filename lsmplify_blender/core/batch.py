"""``python -m lsmplify_blender batch INPUT... --out DIR``: convert whole mocap libraries.

Every take is what ``convert`` does to one file (``cli.convert_take``); what batch adds:
- finding the takes: files and folders (recursive), every keypoint format ``convert``
  reads; other motion files (.fbx, .c3d, CMU-subset .txt...) are listed as skipped;
- the input tree mirrored under DIR (``walk/01.bvh`` -> ``DIR/walk/01.bvh.npz``: the
  source extension is kept so ``01_01.bvh`` and ``01_01.amc`` never overwrite each other);
- resume: a take whose .npz is newer than its input (and skeleton) is skipped, its figures
  read back from the .npz; writes are temp file + rename, so a killed run leaves no
  half-written output;
- isolation: a failed take becomes a summary row; a worker that dies inside a take
  (segfault, ``os._exit``, the OOM killer) is replaced and that take marked failed;
- engines: ``local`` (worker processes that each load the model and network once),
  ``ray`` (the same on a Ray cluster, ``batch_ray.py``) and ``inline`` (this process: the
  Blender operator, which passes its own model, a progress callback and a cancel flag).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import multiprocessing
import os
import sys
import time
import traceback
from collections import deque
from multiprocessing.connection import wait as wait_ready
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import InputError, LSMPLifyError
from .formats import SUPPORTED_EXTENSIONS, find_asf
from .formats.amass import partial_path

# Motion formats that are not keypoints for the core: listed as skipped, with what to do.
OTHER_MOTION = {
    ".fbx": "FBX is not a keypoint format for the core: import it in Blender (File > Import > FBX) and "
    "solve from the armature (Source: Armature).",
    ".txt": "a .txt file is not a keypoint format read by extension (CMU-subset clips are read with "
    "read_cmu_subset); save the keypoints as " + " ".join(SUPPORTED_EXTENSIONS) + ".",
    ".c3d": "C3D marker files are not read by the core: export the labelled markers as .csv.",
    ".trc": "TRC marker files are not read by the core: export the markers as .csv.",
    ".glb": "glTF is not a keypoint format for the core: import it in Blender and solve from the armature.",
    ".gltf": "glTF is not a keypoint format for the core: import it in Blender and solve from the armature.",
}
SKELETON_EXTENSIONS = (".asf",)  # read with their motions, never takes of their own
CSV_FIELDS = (
    "input",
    "output",
    "status",
    "frames",
    "layout",
    "units",
    "solver",
    "fit_error_mm_mean",
    "fit_error_mm_max",
    "mpbe_mm",
    "seconds",
    "worker",
    "peak_rss_mb",
    "error",
    "reason",
)


@dataclasses.dataclass
class Take:
    """One input file and where its result goes; ``status`` is set once it is decided."""

    input: Path
    output: Path
    asf: Path | None = None
    status: str = "pending"  # pending | ok | failed | skipped
    row: dict = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------- the command line
def add_batch_parser(sub, add_take_options) -> None:
    b = sub.add_parser(
        "batch",
        help="convert files and folders of takes (parallel, resumable)",
        description="Convert every take under the inputs; writes DIR/summary.json and .csv.",
    )
    b.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="keypoint files and folders (searched recursively)",
    )
    b.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder: the input tree mirrored, one .npz per take",
    )
    b.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="worker processes (default: the CPU cores; with --engine ray: the cluster's CPUs)",
    )
    b.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local: a process pool on this machine; ray: Ray tasks on a cluster (pip install ray)",
    )
    b.add_argument(
        "--ray-address",
        default=None,
        metavar="auto|HOST:PORT",
        help="a running Ray cluster (default: start a local one with --workers CPUs)",
    )
    b.add_argument(
        "--pattern",
        default=None,
        metavar="GLOB",
        help="only files whose path below the input folder matches (e.g. '*.bvh', 'walk*/*.amc')",
    )
    b.add_argument(
        "--overwrite", action="store_true", help="redo takes whose output is already up to date"
    )
    add_take_options(b)
    b.add_argument(
        "--quiet", action="store_true", help="no progress bar, only the JSON summary line"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: at least 1 worker")
    return value


def run_batch_command(args) -> int:
    """The ``batch`` subcommand: 0 when no take failed, 1 when some did, 130 when interrupted."""
    from .cli_guards import check_take_options

    check_take_options(args)  # the same ranges as convert, before any take starts
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(
            f"--out {args.out} is a file; batch writes a folder of results: give a folder."
        )
    takes = find_takes(
        args.inputs, out_dir, pattern=args.pattern, asf=args.asf, overwrite=args.overwrite
    )
    todo = sum(t.status == "pending" for t in takes)
    bar = ProgressBar(todo, quiet=args.quiet)
    t0 = time.perf_counter()
    interrupted = False
    try:
        run_batch(
            takes,
            args,
            engine=args.engine,
            workers=args.workers,
            ray_address=args.ray_address,
            on_row=bar.update_row,
        )
    except KeyboardInterrupt:
        interrupted = True
        mark_unfinished(
            takes, "the batch was interrupted before this take finished; run again to resume"
        )
    finally:
        bar.close()
    totals = write_summary(
        takes,
        out_dir,
        seconds=time.perf_counter() - t0,
        extra={
            "engine": args.engine,
            "interrupted": interrupted,
            "workers": args.workers or (os.cpu_count() if args.engine == "local" else "cluster"),
        },
    )
    print(json.dumps(totals))
    if interrupted:
        return 130
    return 1 if totals["failed"] else 0


class ProgressBar:
    """tqdm over takes with frames/s; silent (tqdm's own check) when stderr is not a terminal,
    and absent without tqdm (the optional ``batch`` extra): the conversion is the same."""

    def __init__(self, total: int, quiet: bool):
        self.frames = 0
        self.t0 = time.perf_counter()
        self.bar = None
        try:
            from tqdm import tqdm
        except ImportError:
            if not quiet and sys.stderr.isatty():
                print(
                    "lsmplify: no progress bar without tqdm (pip install tqdm==4.70.1)",
                    file=sys.stderr,
                )
            return
        self.bar = tqdm(
            total=total,
            unit="take",
            desc="lsmplify batch",
            file=sys.stderr,
            disable=True if quiet else None,
            dynamic_ncols=True,
        )

    def update_row(self, take: Take, done: int, total: int) -> None:
        if self.bar is None:
            return
        self.frames += int(take.row.get("frames") or 0) if take.status == "ok" else 0
        rate = self.frames / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{rate:,.0f} frames/s", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- finding the takes
def find_takes(
    inputs, out_dir, pattern: str | None = None, asf=None, overwrite: bool = False
) -> list[Take]:
    """Every take under ``inputs`` (files, folders searched recursively) with its output path.

    Unsupported motion files and up-to-date outputs come back already ``skipped``.
    ``asf`` is the skeleton for the .amc takes that have none of their own beside them.
    """
    out_dir = Path(out_dir).resolve()
    roots = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise InputError(
                f"Input '{item}' does not exist: give keypoint files or folders of them."
            )
        root = p.resolve()
        if root == out_dir or out_dir in root.parents:
            raise InputError(
                f"Input '{item}' is inside --out {out_dir}: the results would be read back as "
                "takes. Give an output folder outside the inputs."
            )
        roots.append(root)
    base = Path(os.path.commonpath([r if r.is_dir() else r.parent for r in roots]))
    fallback_asf = Path(asf).resolve() if asf else None
    if fallback_asf is not None and (
        fallback_asf.suffix.lower() != ".asf" or not fallback_asf.is_file()
    ):
        raise InputError(f"--asf {asf}: not an .asf skeleton file.")
    seen, takes = set(), []
    for root in roots:
        for path in [root] if root.is_file() else _motion_files(root, out_dir, pattern):
            if path in seen:
                continue
            seen.add(path)
            rel = path.relative_to(base)
            take = Take(path, out_dir / rel.parent / (rel.name + ".npz"))
            if path.suffix.lower() == ".amc":
                take.asf = find_asf(path) or fallback_asf
            _decide(take, overwrite)
            takes.append(take)
    if not takes:
        raise InputError(
            f"No takes found in {', '.join(map(str, inputs))}"
            + (f" matching --pattern {pattern}" if pattern else "")
            + f": batch reads {' '.join(SUPPORTED_EXTENSIONS)} files."
        )
    return takes


def _motion_files(folder: Path, out_dir: Path, pattern: str | None):
    """Motion files below ``folder`` in a stable order; hidden entries and ``out_dir`` left out."""
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (here / d).resolve() != out_dir
        )
        for name in sorted(filenames):
            path = here / name
            ext = path.suffix.lower()
            if name.startswith(".") or ext in SKELETON_EXTENSIONS:
                continue
            if pattern is not None:
                if PurePosixPath(path.relative_to(folder).as_posix()).match(pattern):
                    yield path
            elif ext in SUPPORTED_EXTENSIONS or ext in OTHER_MOTION:
                yield path


def _decide(take: Take, overwrite: bool) -> None:
    """Skip what cannot or need not be converted: unsupported files, up-to-date outputs."""
    ext = take.input.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        reason = OTHER_MOTION.get(
            ext,
            f"'{ext or '(no extension)'}' is not a keypoint format; "
            f"batch reads {' '.join(SUPPORTED_EXTENSIONS)}.",
        )
        _finish(take, "skipped", reason=f"unsupported: {reason}", output="")
        return
    if overwrite or not take.output.is_file():
        return
    newest_input = max(take.input.stat().st_mtime, take.asf.stat().st_mtime if take.asf else 0.0)
    if take.output.stat().st_mtime <= newest_input:
        return
    figures = read_back(take.output)
    if figures is not None:  # an unreadable output is converted again
        _finish(
            take,
            "skipped",
            reason="up to date (the output is newer than the input; --overwrite redoes it)",
            **figures,
        )


def read_back(path: Path) -> dict | None:
    """The summary figures stored in an output .npz, or None when it is not a readable result."""
    try:
        with np.load(path, allow_pickle=False) as z:
            fit = z["fit_error_mm"].astype(np.float64)
            return {
                "frames": int(z["poses"].shape[0]),
                "layout": str(z["layout"]),
                "units": str(z["units"]),
                "solver": str(z["solver"]),
                "mpbe_mm": round(float(z["mpbe_mm"]), 3),
                "fit_error_mm_mean": round(float(np.nanmean(fit)), 3) if fit.size else None,
                "fit_error_mm_max": round(float(np.nanmax(fit)), 3) if fit.size else None,
            }
    except Exception:  # noqa: BLE001 (an unreadable old output is simply redone)
        return None


def mark_unfinished(takes: list[Take], why: str) -> None:
    """Takes a cancelled or interrupted batch did not finish: skipped, saying why."""
    for t in takes:
        if t.status == "pending":
            _finish(t, "skipped", reason=why)


def _finish(take: Take, status: str, **row) -> None:
    take.status = status
    made = status == "ok" or (status == "skipped" and take.output.is_file())
    output = str(take.output) if made else ""  # a failed or cancelled take wrote nothing
    take.row = {"input": str(take.input), "output": output, "status": status, **row}


# ----------------------------------------------------------------------------- one take
def run_take(options, model, take: Take) -> dict:
    """Convert one take (``cli.convert_take``) into a summary row; never raises for a bad take."""
    from .cli import convert_take

    t0 = time.perf_counter()
    try:
        s = convert_take(options, model, take.input, take.output, asf=take.asf)
        row = {
            k: s[k]
            for k in (
                "frames",
                "layout",
                "units",
                "solver",
                "fit_error_mm_mean",
                "fit_error_mm_max",
                "mpbe_mm",
            )
        }
        row.update(status="ok", output=s["output"], notes=s["notes"])
    except LSMPLifyError as exc:
        row = {"status": "failed", "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 (one take's failure never stops the batch)
        row = {
            "status": "failed",
            "error": f"internal error ({type(exc).__name__}: {exc})",
            "traceback": traceback.format_exc(limit=6),
        }
    finally:
        remove_partial(take)
    row.update(
        seconds=round(time.perf_counter() - t0, 4), worker=os.getpid(), peak_rss_mb=peak_rss_mb()
    )
    return row


def remove_partial(take: Take) -> None:
    with contextlib.suppress(OSError):
        partial_path(take.output).unlink(missing_ok=True)


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (MB), None where the OS does not say."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(
        peak / (2**20 if sys.platform == "darwin" else 2**10), 1
    )  # bytes on macOS, KiB on Linux


# ----------------------------------------------------------------------------- engines
def run_batch(
    takes: list[Take],
    options,
    engine: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    model=None,
    on_row=None,
    cancel=None,
    take_fn=None,
) -> list[Take]:
    """Convert the pending takes; every take ends ok/failed/skipped with its summary row.

    ``on_row(take, done, total)`` is called as each pending take finishes; ``cancel`` (an
    object with ``is_set()``) stops handing out takes. ``take_fn(options, model, take) ->
    row`` replaces ``run_take`` (tests use it to crash a worker); ``model`` is the inline
    engine's model (default: loaded from ``options``). A script that calls this with the
    local engine needs the ``if __name__ == "__main__":`` guard: the workers import the
    main module (multiprocessing's fork server and spawn do).
    """
    pending = [t for t in takes if t.status == "pending"]
    # largest first: the long takes start early and do not finish alone at the end
    pending.sort(key=_size, reverse=True)
    counter = _Counter(len(pending), on_row)
    take_fn = take_fn or run_take
    if engine == "inline":
        _run_inline(pending, options, model, take_fn, counter, cancel)
    elif engine == "local":
        _run_local(pending, options, workers or os.cpu_count() or 1, take_fn, counter, cancel)
    elif engine == "ray":
        from .batch_ray import run_ray

        run_ray(pending, options, workers, ray_address, take_fn, counter, cancel)
    else:
        raise LSMPLifyError(f"Unknown engine '{engine}'; use local or ray.")
    return takes


def _size(take: Take) -> int:
    try:
        return take.input.stat().st_size
    except OSError:  # gone since it was found: its take fails with the reader's message
        return 0


class _Counter:
    def __init__(self, total, on_row):
        self.done, self.total, self.on_row = 0, total, on_row

    def finish(self, take: Take, row: dict) -> None:
        status = row.pop("status")
        _finish(take, status, **row)
        self.done += 1
        if self.on_row is not None:
            self.on_row(take, self.done, self.total)


def _run_inline(pending, options, model, take_fn, counter, cancel) -> None:
    from .cli import load_model

    model = model if model is not None else load_model(options)
    for take in pending:
        if cancel is not None and cancel.is_set():
            break
        counter.finish(take, take_fn(options, model, take))


def worker_setup():
    """A batch worker solves on one thread: the workers are the parallelism (``cpu_threads``)."""
    import torch

    torch.set_num_threads(1)


def _worker_main(conn, options, take_fn) -> None:
    """A local worker process: load the model once, then convert the takes it is sent."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    from .cli import load_model

    worker_setup()
    try:
        model = load_model(options)
    except LSMPLifyError as exc:
        conn.send(("error", str(exc)))
        return
    conn.send(("ready", os.getpid()))
    while True:
        take = conn.recv()
        if take is None:
            return
        conn.send(("row", take_fn(options, model, take)))


class _Worker:
    def __init__(self, ctx, options, take_fn):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, options, take_fn), daemon=True)
        self.proc.start()
        child.close()
        self.take: Take | None = None
        self.ready = False

    def stop(self, hard: bool = False) -> None:
        if hard:
            self.proc.kill()
        else:
            with contextlib.suppress(OSError):
                self.conn.send(None)
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


MAX_START_FAILURES = 3


def _run_local(pending, options, n_workers, take_fn, counter, cancel) -> None:
    """Worker processes fed one take at a time; a dead worker's take fails and it is replaced."""
    pool = _LocalPool(options, take_fn, counter, deque(pending))
    try:
        pool.start(min(n_workers, len(pool.queue)))
        while pool.workers and (pool.queue or pool.in_flight()):
            stopping = cancel is not None and cancel.is_set()
            if not stopping:
                pool.dispatch()
            elif not pool.in_flight():
                break
            pool.collect(timeout=0.5)
    finally:
        pool.close()


class _LocalPool:
    def __init__(self, options, take_fn, counter, queue: deque):
        self.ctx = _worker_context()
        self.options, self.take_fn, self.counter, self.queue = options, take_fn, counter, queue
        self.workers: list[_Worker] = []
        self.start_failures = 0

    def start(self, n: int) -> None:
        self.workers += [_Worker(self.ctx, self.options, self.take_fn) for _ in range(n)]

    def in_flight(self) -> bool:
        return any(w.take is not None for w in self.workers)

    def dispatch(self) -> None:
        for w in self.workers:
            if w.ready and w.take is None and self.queue:
                w.take = self.queue.popleft()
                w.conn.send(w.take)

    def collect(self, timeout: float) -> None:
        """Handle every worker that sent something or died within ``timeout`` seconds."""
        busy = [w for w in self.workers if w.take is not None or not w.ready]
        ready = set(
            wait_ready([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=timeout)
        )
        for w in [w for w in busy if w.conn in ready or w.proc.sentinel in ready]:
            message = _receive(w)
            if message is None:
                self._replace(w)
            elif message[0] == "ready":
                w.ready = True
            elif message[0] == "error":  # the model could not be loaded: the same for every worker
                raise LSMPLifyError(message[1])
            elif message[0] == "row":
                take, w.take = w.take, None
                self.counter.finish(take, message[1])

    def _replace(self, w: _Worker) -> None:
        """A worker died: its take fails (nothing half-written stays), a new one starts if work is left."""
        self.start_failures += 0 if w.ready else 1
        if self.start_failures >= MAX_START_FAILURES:
            raise LSMPLifyError(
                f"Batch workers keep dying while starting ({_death(w.proc)}); "
                "check the free memory and the --model file."
            )
        if w.take is not None:
            remove_partial(w.take)
            self.counter.finish(
                w.take,
                {
                    "status": "failed",
                    "worker": w.proc.pid,
                    "error": f"the worker process died in this take ({_death(w.proc)}); "
                    "it was replaced and the other takes went on",
                },
            )
            w.take = None
        w.stop(hard=True)
        self.workers.remove(w)
        if self.queue:
            self.start(1)

    def close(self) -> None:
        for w in self.workers:
            if w.take is not None:  # interrupted mid-take: no half-written output stays
                w.stop(hard=True)
                remove_partial(w.take)
            else:
                w.stop()


def _worker_context():
    """Fork server where there is one: it imports torch and the core once, and every worker
    (replacements too) is forked from it in milliseconds, instead of importing torch again
    (seconds each); never a plain fork of this process, whose torch may hold threads."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["lsmplify_blender.core.batch", "lsmplify_blender.core.cli"])
        return ctx
    return multiprocessing.get_context("spawn")


def _receive(w: _Worker):
    try:
        if w.conn.poll():
            return w.conn.recv()
    except (EOFError, OSError):
        return None
    return None if not w.proc.is_alive() else ("busy",)


def _death(proc) -> str:
    proc.join(timeout=2)
    code = proc.exitcode
    if code is not None and code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# ----------------------------------------------------------------------------- the summary
def write_summary(takes: list[Take], out_dir, seconds: float, extra: dict | None = None) -> dict:
    """DIR/summary.json (totals + every row) and DIR/summary.csv (one row per take), both atomic."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [t.row for t in takes]
    count = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "skipped")}
    converted = [r for r in rows if r["status"] == "ok"]
    frames = sum(r.get("frames") or 0 for r in converted)
    rss = [
        r["peak_rss_mb"]
        for r in rows
        if r.get("peak_rss_mb") is not None and r["status"] != "skipped"
    ]
    totals = {
        "takes": len(rows),
        **count,
        "frames": frames,
        "seconds": round(seconds, 3),
        "frames_per_second": round(frames / max(seconds, 1e-9), 1),
        "seconds_per_take": round(seconds / max(len(converted), 1), 4),
        "peak_rss_mb_per_worker": max(rss) if rss else None,
        **(extra or {}),
        "summary_json": str(out_dir / "summary.json"),
        "summary_csv": str(out_dir / "summary.csv"),
    }
    _atomic_write(out_dir / "summary.json", json.dumps({"totals": totals, "takes": rows}, indent=1))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(out_dir / "summary.csv", buf.getvalue())
    return totals


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
