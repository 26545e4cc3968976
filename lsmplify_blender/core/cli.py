"""Command line: ``python -m lsmplify_blender convert INPUT --out OUT.npz [options]``,
``python -m lsmplify_blender batch INPUT... --out DIR [options]`` (whole libraries, see
``batch.py``) and ``python -m lsmplify_blender eval [--real] [options]`` (all solvers side by
side on synthetic and real captures, see ``research/evaluate.py`` and ``research/real_eval.py``;
not part of the add-on).

Prints what was detected on stderr and one JSON summary line on stdout, so scripts can
parse the result. Errors the user can fix exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch  # already imported by .solver; named here for the annotations

from .cli_guards import check_take_options, json_safe, last_resort, output_path
from .contacts import LOCK_MODES
from .errors import LSMPLifyError
from .layouts import LAYOUTS
from .solver import DEFAULT_SOLVER, ROTATION_MODES, SOLVERS

MAX_GROUND_M = 100.0  # --ground: a floor further than this from the origin is a typo (or units)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m lsmplify_blender",
        description="Turn 3D keypoint motion into SMPL pose and shape.",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    _add_convert_parser(sub)
    from .batch import add_batch_parser

    add_batch_parser(sub, _add_take_options)
    _add_eval_parser(sub)
    return ap


def _add_convert_parser(sub) -> None:
    """``convert``: one take to SMPL parameters (the take options, plus plug-in mode)."""
    c = sub.add_parser("convert", help="solve a keypoint file to SMPL parameters (.npz)")
    c.add_argument("input", help="keypoints: .npz .npy .json .csv .bvh .amc")
    c.add_argument(
        "--out", required=True, help="output .npz (AMASS-style: poses, betas, trans, ...)"
    )
    _add_take_options(c)
    c.add_argument(
        "--init",
        default=None,
        metavar="SMPL.npz",
        help="plug-in mode: refine this existing SMPL motion (AMASS-style .npz, same frames as the "
        "keypoints; e.g. an image-based estimate) against the keypoints instead of solving "
        "from scratch; its shape is kept",
    )
    c.add_argument(
        "--passes",
        type=int,
        default=2,
        metavar="N",
        help="plug-in mode: network passes (default 2; 0 = optimisation only, with --refine)",
    )
    c.add_argument("--quiet", action="store_true", help="only the JSON summary line")


def _add_eval_parser(sub) -> None:
    """``eval``: every solver side by side (``research/evaluate.py``, ``research/real_eval.py``)."""
    e = sub.add_parser(
        "eval",
        help="every solver side by side: synthetic CMU test motion and held-out real captures "
        "(markdown report + PNGs)",
    )
    e.add_argument(
        "--data",
        default=None,
        help="mocap data root holding cmu_subset/, cmu_raw/, deepmimic/ (default: "
        "$LSMPLIFY_DATA); a folder of cmu_subset clips also works",
    )
    e.add_argument(
        "--real", action="store_true", help="only the real-capture evaluation (held-out real takes)"
    )
    e.add_argument(
        "--no-real",
        action="store_true",
        help="only the synthetic protocol (no real-capture section)",
    )
    e.add_argument(
        "--solvers",
        default=None,
        metavar="S1,S2",
        help="real captures: solvers to compare, each name[:option=value...] passed to the solver "
        "(default analytic,network,optimize, plus network:rotations=ignore when the solver reads the "
        "file's rotations), e.g. network:refine=5:smooth=0",
    )
    e.add_argument(
        "--sources",
        default=None,
        metavar="K1,K2",
        help="real captures: source kinds (cmu_subset,cmu_bvh,cmu_amc,cmu_fbx_bvh,deepmimic; default all)",
    )
    e.add_argument(
        "--frames",
        type=int,
        default=None,
        metavar="N",
        help="real captures: first N frames (~30 fps) of each take (default 120; 0 = all)",
    )
    e.add_argument(
        "--layout",
        default="smpl24",
        choices=list(LAYOUTS),
        help="keypoints generated from the motion",
    )
    e.add_argument("--noise-mm", type=float, default=0.0, help="Gaussian keypoint noise (mm)")
    e.add_argument(
        "--model", default=None, help="SMPL-format .pkl/.npz (default: the embedded open model)"
    )
    e.add_argument(
        "--out",
        default="out/eval_report.md",
        help="markdown report (the PNGs are written next to it)",
    )
    e.add_argument(
        "--clips",
        type=int,
        default=None,
        metavar="N",
        help="first N synthetic clips (default: all); real captures: at most N takes per source kind",
    )
    e.add_argument(
        "--optimize-frames",
        type=int,
        default=None,
        metavar="N",
        help="frames per clip for the slow optimisation baseline (default 30 synthetic, 10 real)",
    )
    e.add_argument("--max-frames", type=int, default=None, help=argparse.SUPPRESS)
    e.add_argument("--quiet", action="store_true", help="no per-clip progress on stderr")


def _add_take_options(p: argparse.ArgumentParser) -> None:
    """How one take is read and solved: the options ``convert`` and ``batch`` share."""
    p.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS])
    p.add_argument("--units", default="auto", choices=["auto", "m", "cm", "mm", "inch", "cmu"])
    p.add_argument("--up", default="auto", choices=["auto", "y", "z"])
    p.add_argument(
        "--fps", type=float, default=None, help="frame rate (default: from the file, else 30)"
    )
    p.add_argument(
        "--model", default=None, help="SMPL-format .pkl/.npz (default: the embedded open model)"
    )
    p.add_argument("--solver", default=DEFAULT_SOLVER, choices=list(SOLVERS))
    p.add_argument(
        "--refine", type=int, default=0, metavar="N", help="iterations of refinement after solving"
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=None,
        metavar="N",
        help="network solver: frames per sequential chunk, each started from analytic IK and run "
        "frame to frame (default 1: every frame from analytic IK + one plug-in pass)",
    )
    p.add_argument(
        "--smooth",
        type=_smooth_arg,
        default="auto",
        metavar="auto|SECONDS",
        help="zero-phase Gaussian smoothing of the keypoints over time before solving: 'auto' "
        "(default) estimates the keypoint noise from limb-length changes and smooths only "
        "noisy input; a number of seconds (e.g. 0.05) forces that sigma; 0 turns it off",
    )
    p.add_argument(
        "--rotations",
        default="auto",
        choices=list(ROTATION_MODES),
        help="bone rotations of BVH and ASF/AMC input: 'auto' (default) uses them when the file has them "
        "(the twist of every bone and the head, hand and foot orientation come from the capture), "
        "'use' requires them, 'ignore' solves from the joint positions only",
    )
    p.add_argument(
        "--calibrate",
        default="auto",
        choices=["auto", "on", "off"],
        help="per-keypoint calibration: each keypoint is its SMPL joint plus a constant offset in its "
        "body part's frame, estimated over the take (the offsets are written as keypoint_offsets); "
        "'auto' (default) is on for mocap skeletons (the cmu layout: BVH, ASF/AMC, CMU/Mixamo rigs; "
        "DeepMimic), "
        "off for SMPL-24 and pose-estimator keypoints",
    )
    p.add_argument(
        "--lock-feet",
        default="auto",
        choices=list(LOCK_MODES),
        help="plant each foot where the capture holds it on the floor (contacts detected from the "
        "input's heel and toe heights and speeds; leg IK, blended in and out) and keep every mesh "
        "vertex above the ground: 'auto' (default) = on for mocap skeletons (BVH, ASF/AMC, CMU, FBX "
        "rigs), off for SMPL-24, pose-estimator and model-generated keypoints; 'off' leaves the "
        "solve untouched. The same after --init's refine. Contacts and the ground are written to "
        "the .npz either way",
    )
    p.add_argument(
        "--ground",
        type=_ground_arg,
        default=None,
        metavar="Y",
        help="the floor's height in metres in the output's world (Y up, as the .npz's trans: "
        "SMPL's Y-up frame after any Z-up input was turned); default: estimated from where the "
        "input's feet stand",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument(
        "--asf",
        default=None,
        help="ASF skeleton for an .amc input (batch: for the takes with no ASF of their own beside them)",
    )


def _smooth_arg(text: str):
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is neither 'auto' nor a number of seconds"
        ) from None
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text}: the smoothing sigma must be >= 0 seconds")
    return value


def _ground_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a height: give the floor's Y in metres, e.g. --ground 0 or --ground -0.02"
        ) from None
    if not np.isfinite(value) or abs(value) > MAX_GROUND_M:
        raise argparse.ArgumentTypeError(
            f"{text}: the floor height must be a finite number of metres within +-{MAX_GROUND_M:g}"
        )
    return value


def _load_init(path, model) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(rotmats, betas, trans) of an AMASS-style .npz in SMPL's Y-up world (Z-up files turned)."""
    import torch

    from .body_model import rotmats_from_axis_angle
    from .formats.amass import read_smpl_npz, turn_motion_z_up_to_y_up

    init = read_smpl_npz(path)
    rot = rotmats_from_axis_angle(init["poses"].astype(np.float64))
    betas = np.zeros(model.num_betas)
    k = min(model.num_betas, init["betas"].shape[0])
    betas[:k] = init["betas"][:k]
    trans = init["trans"].astype(np.float64)
    if init["up"] == "z":  # declared, or detected from the data (AMASS has no 'up' key)
        j0 = (
            model.rest_joints(torch.as_tensor(betas, dtype=model.dtype))[0, 0]
            .cpu()
            .double()
            .numpy()
        )
        root, trans = turn_motion_z_up_to_y_up(rot[:, 0].cpu().double().numpy(), trans, j0)
        rot[:, 0] = torch.as_tensor(root, dtype=rot.dtype)
    return rot, betas, trans


def _init_offsets(path, layout):
    """The ``keypoint_offsets`` an earlier solve wrote into the ``--init`` file, checked against the
    layout (``calibration.checked_offsets``), or None when it has none."""
    from . import safe_npy
    from .calibration import checked_offsets
    from .errors import InputError

    data, _ = safe_npy.read_npz(
        path, InputError, keys=("keypoint_offsets", "keypoint_names"), kinds="biufU"
    )
    if "keypoint_offsets" not in data:
        return None
    name = f"--init {Path(path).name}: keypoint_offsets"
    return checked_offsets(data["keypoint_offsets"], layout, data.get("keypoint_names"), name)


def convert(args) -> dict:
    from .body_model import OPEN_MODEL_PATH

    t0 = time.perf_counter()
    check_take_options(args)
    out_path = output_path(
        args.out,
        {
            "the input": args.input,
            "--model": args.model or OPEN_MODEL_PATH,
            "--init": args.init,
            "--asf": args.asf,
        },
    )
    summary = convert_take(args, load_model(args), args.input, out_path, asf=args.asf)
    if not args.quiet:
        for note in summary["notes"]:
            print(f"lsmplify: {note}", file=sys.stderr)
    del summary["notes"]
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


def load_model(args):
    """The body model ``--model`` names on ``--device``: loaded once per process (``batch`` workers too)."""
    from .body_model import BodyModel, load_model_data
    from .device import resolve_device

    return BodyModel(load_model_data(args.model), device=resolve_device(args.device))


def convert_take(args, model, input_path, out_path, asf=None) -> dict:
    """One take: read, prepare, solve (or refine ``args.init``) and write the AMASS-style .npz.

    ``args`` holds the take options (``_add_take_options``); returns the JSON summary with
    the readers' and solver's ``notes``. ``convert`` and every ``batch`` worker call this.
    """
    from .fit_report import fit_report
    from .formats import read_keypoints
    from .plausibility import check_plausible
    from .prepare import prepare
    from .solver import refine_existing, solve

    t0 = time.perf_counter()
    if not getattr(args, "init", None):
        from .long_take import convert_long_take  # long .npy/.bvh takes: by blocks (issue 12)

        streamed = convert_long_take(args, model, input_path, out_path)
        if streamed is not None:
            return streamed
    seq = read_keypoints(input_path, asf=asf)
    prepared = prepare(seq, model, layout=args.layout, units=args.units, up=args.up, fps=args.fps)
    check_plausible(prepared)
    calibrate = getattr(args, "calibrate", "auto")
    if getattr(args, "init", None):
        init = _load_init(args.init, model)  # checks the file first (its own messages)
        offsets = None if calibrate == "off" else _init_offsets(args.init, prepared.layout)
        sol = refine_existing(
            prepared,
            model,
            *init,
            passes=args.passes,
            refine=args.refine,
            smooth=args.smooth,
            keypoint_offsets=offsets,
            lock_feet=getattr(args, "lock_feet", "auto"),
            ground=getattr(args, "ground", None),
        )
    else:
        sol = solve(
            prepared,
            model,
            solver=args.solver,
            refine=args.refine,
            smooth=args.smooth,
            network_chunk=args.chunk,
            rotations=args.rotations,
            calibrate=calibrate,
            lock_feet=getattr(args, "lock_feet", "auto"),
            ground=getattr(args, "ground", None),
        )
    report = fit_report(model, prepared, sol, source_names=seq.names)
    feet = {}
    if sol.contacts is not None:  # the feet's contacts and ground (a solve and --init alike)
        feet = dict(contacts=sol.contacts.astype(bool), ground_height=np.float32(sol.ground_height))
    return finish_take(args, model, input_path, out_path, prepared, sol, t0, report, feet)


def finish_take(args, model, input_path, out_path, prepared, sol, t0, report, feet) -> dict:
    """Write a solved take's .npz and return its JSON summary (``convert_take``; ``long_take``
    hands in its own stand-ins for the prepared keypoints and the solution, its fit ``report``
    and its ``feet`` arrays)."""
    from .formats.amass import write_smpl_npz

    out = write_smpl_npz(
        out_path,
        sol.poses,
        sol.betas.cpu().numpy(),
        sol.trans.cpu().numpy(),
        prepared.fps,
        gender=model.data.meta.get("gender", "neutral"),
        fit_error_mm=sol.fit_error_mm.astype(np.float32),
        layout=prepared.layout.name,
        units=prepared.units,
        solver=sol.solver,
        model=model.data.name,
        mpbe_mm=np.float32(sol.mpbe_mm),
        **report.npz_fields(),
        **feet,
    )
    err = sol.fit_error_mm
    return {
        "input": str(input_path),
        "output": str(out),
        "frames": prepared.num_frames,
        "layout": prepared.layout.name,
        "units": prepared.units,
        "up": prepared.up,
        "fps": prepared.fps,
        "solver": sol.solver,
        "rotations": sol.rotations,
        "refine": args.refine,
        "device": sol.device,
        "model": model.data.name,
        "fit_error_mm_mean": round(float(np.nanmean(err)), 3),
        "fit_error_mm_max": round(float(np.nanmax(err)), 3),
        **report.to_json(),
        "mpbe_mm": round(float(sol.mpbe_mm), 3),
        "noise_mm": round(float(sol.noise_mm), 2) if np.isfinite(sol.noise_mm) else None,
        "smooth_seconds": round(sol.smooth_s, 4),
        "solve_seconds": round(sol.seconds, 4),
        "solve_fps": round(prepared.num_frames / max(sol.seconds, 1e-9), 1),
        "seconds": round(time.perf_counter() - t0, 3),
        **({"feet": sol.feet} if sol.feet else {}),
        "notes": prepared.notes + sol.notes,
    }


def evaluate(args) -> dict:
    from ..research.evaluate import run_eval  # the research package: not in the add-on zip
    from ..research.real_eval import DEFAULT_FRAMES, OPTIMIZE_FRAMES, run_real_eval

    log = (
        None if args.quiet else (lambda msg: print(f"lsmplify: {msg}", file=sys.stderr, flush=True))
    )
    if args.real and args.no_real:
        raise LSMPLifyError(
            "--real and --no-real exclude each other: give one of them (or neither for both)."
        )
    real = dict(
        frames=DEFAULT_FRAMES if args.frames is None else (args.frames or None),
        clips=args.clips,
        optimize_frames=OPTIMIZE_FRAMES if args.optimize_frames is None else args.optimize_frames,
    )
    if args.solvers:
        real["solvers"] = [s for s in args.solvers.split(",") if s.strip()]
    if args.sources:
        real["kinds"] = [s.strip() for s in args.sources.split(",") if s.strip()]
    if args.real:
        return run_real_eval(data=args.data, model_path=args.model, out=args.out, log=log, **real)
    return run_eval(
        data=args.data,
        layout=args.layout,
        noise_mm=args.noise_mm,
        model_path=args.model,
        out=args.out,
        clips=args.clips,
        optimize_frames=30 if args.optimize_frames is None else args.optimize_frames,
        max_frames=args.max_frames,
        log=log,
        real=not args.no_real,
        real_options=real,
    )


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "convert":
            summary = convert(args)
        elif args.command == "eval":
            summary = evaluate(args)
        elif args.command == "batch":
            from .batch import run_batch_command

            return run_batch_command(args)
        print(json.dumps(json_safe(summary), allow_nan=False))
        return 0
    except LSMPLifyError as exc:
        print(f"lsmplify: error: {exc}", file=sys.stderr)
        return 2
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 (the last resort: one line, never a traceback)
        return last_resort(exc)
