#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Blender demo, headless with the bpy wheel: the bundled CMU clip through the add-on's operators.

    .venv/bin/python tools/demo_blender.py --out out [--input FILE] [--max-frames N]
                                           [--solver analytic|network|optimize]
                                           [--preview-frames 6] [--resolution 240]

Steps (each one an operator, as a user would click them):

1. ``lsmplify.import_keypoints``: read the clip, one animated empty per keypoint, scene range
   and fps set to the clip's (``--max-frames`` then shortens the scene range);
2. ``lsmplify.solve`` with the panel's defaults (the default model and solver, the core's
   ``DEFAULT_SOLVER``; the file's bone rotations are used for twist): a new SMPL rig + mesh;
3. save ``OUT/demo.blend``;
4. ``lsmplify.export_npz`` -> ``OUT/demo_smpl.npz`` (one row per solved frame: the scene
   frames the solve covered);
5. ``lsmplify.render_preview`` -> ``OUT/preview/preview_NNNNN.png`` (Workbench, a few frames).

Prints where the files are and the fit figures, then one JSON line (``--json``) with them.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "lsmplify_blender" / "core" / "data" / "demo" / "cmu_131_01.bvh"
ADDON = "lsmplify_blender"


def import_bpy():
    """bpy with its user resources in a temp dir (set before the import: bpy reads it once)."""
    if not os.environ.get("BLENDER_USER_RESOURCES"):
        tmp = tempfile.mkdtemp(prefix="lsmplify_demo_user_")
        atexit.register(shutil.rmtree, tmp, True)
        os.environ["BLENDER_USER_RESOURCES"] = tmp
    try:
        import bpy
    except ImportError:
        raise SystemExit(
            "error: the bpy wheel is not installed in this Python (make venv installs it)"
        ) from None
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return bpy


def main(argv=None) -> int:
    try:
        return _main(argv)
    except RuntimeError as exc:  # an operator reported an error: bpy.ops raises with its message
        print(f"error: {exc}".strip(), file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out", help="output folder (default: out)")
    ap.add_argument(
        "--input", default=str(DEMO), help="keypoint file (default: the bundled CMU clip)"
    )
    ap.add_argument(
        "--max-frames", type=int, default=0, help="solve only the first N frames (0: all)"
    )
    ap.add_argument(
        "--solver",
        default=None,
        choices=("analytic", "network", "optimize"),
        help="default: the panel's (the core's DEFAULT_SOLVER)",
    )
    ap.add_argument("--preview-frames", type=int, default=6, help="frames to render (default 6)")
    ap.add_argument(
        "--resolution", type=int, default=240, help="preview width in pixels (default 240)"
    )
    return ap


def _timed(times: dict, name: str, step) -> None:
    t0 = time.perf_counter()
    step()
    times[name] = time.perf_counter() - t0


def _import_and_solve(bpy, src: Path, args, times: dict):
    """Import Keypoints and Solve with the panel's defaults (``--solver`` overrides the solver);
    returns (rig, mesh, action, the solver the rig was made by)."""
    scene = bpy.context.scene
    s = scene.lsmplify
    _timed(
        times,
        "import",
        lambda: bpy.ops.lsmplify.import_keypoints(filepath=str(src), create_empties=True),
    )
    if args.max_frames and scene.frame_end - scene.frame_start + 1 > args.max_frames:
        scene.frame_end = scene.frame_start + args.max_frames - 1
    print(
        f"[demo] {src.name}: {s.detected_frames} frames of {s.detected_layout}, units {s.detected_units}, "
        f"up {s.detected_up}, {s.detected_fps} fps; solving scene frames "
        f"{scene.frame_start}-{scene.frame_end}",
        flush=True,
    )
    if args.solver:
        s.solver = args.solver.upper()
    args.solver = s.solver.lower()  # what the panel will run
    _timed(times, "solve", bpy.ops.lsmplify.solve)
    rigs = [o for o in bpy.data.objects if o.type == "ARMATURE" and o.get("lsmplify_rig")]
    rig = rigs[-1]
    mesh = next(c for c in rig.children if c.type == "MESH")
    action = rig.animation_data.action
    solver_used = str(action.get("lsmplify_solver", args.solver))
    if solver_used != args.solver:
        print(
            f"[demo] note: the {args.solver} solver is not available yet: used the {solver_used} solver "
            "instead",
            flush=True,
        )
    bpy.context.view_layer.objects.active = rig
    return rig, mesh, action, solver_used


def _write_outputs(bpy, out: Path, args, times: dict):
    """The .blend, the exported .npz and the rendered previews; returns (blend, npz, folder, pngs)."""
    blend, npz, preview = out / "demo.blend", out / "demo_smpl.npz", out / "preview"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    _timed(times, "export_npz", lambda: bpy.ops.lsmplify.export_npz(filepath=str(npz)))
    if preview.is_dir():
        for old in preview.glob("preview_*.png"):
            old.unlink()
    _timed(
        times,
        "render_preview",
        lambda: bpy.ops.lsmplify.render_preview(
            directory=str(preview) + os.sep,
            max_frames=args.preview_frames,
            resolution=args.resolution,
        ),
    )
    return blend, npz, preview, sorted(preview.glob("preview_*.png"))


def _report(bpy, src, rig, mesh, action, solver_used, outputs, times, seconds) -> None:
    """The demo's summary lines and its JSON line."""
    import numpy as np

    blend, npz, preview, pngs = outputs
    scene = bpy.context.scene
    s = scene.lsmplify
    with np.load(npz) as z:
        rows = int(z["poses"].shape[0])
        fit = (
            np.asarray(z["fit_error_mm"], dtype=np.float64)
            if "fit_error_mm" in z
            else np.array([np.nan])
        )
    frames = scene.frame_end - scene.frame_start + 1
    summary = dict(
        input=str(src),
        frames=frames,
        npz_rows=rows,
        frame_start=scene.frame_start,
        layout=s.detected_layout,
        solver=solver_used,
        rig=rig.name,
        mesh=mesh.name,
        action=action.name,
        fit_error_mm_mean=round(float(np.nanmean(fit)), 2),
        fit_error_mm_max=round(float(np.nanmax(fit)), 2),
        mpbe_mm=round(float(s.result_mpbe_mm), 2),
        betas=[round(float(b), 3) for b in s.result_betas.split()],
        blend=str(blend),
        npz=str(npz),
        preview=[str(p) for p in pngs],
        step_seconds={k: round(v, 2) for k, v in times.items()},
        seconds=round(seconds, 2),
    )
    print(
        f"[demo] Blender {bpy.app.version_string}: rig '{rig.name}' + mesh '{mesh.name}', "
        f"action '{action.name}' ({solver_used})"
    )
    print(
        f"[demo] frames {frames} | fit error mean {summary['fit_error_mm_mean']:.1f} mm, "
        f"max {summary['fit_error_mm_max']:.1f} mm | MPBE {summary['mpbe_mm']:.1f} mm | "
        f"{seconds:.1f} s (import {times['import']:.1f}, solve+rig {times['solve']:.1f}, "
        f"npz {times['export_npz']:.1f}, preview {times['render_preview']:.1f})"
    )
    print(f"[demo] wrote {blend}")
    print(f"[demo] wrote {npz} ({rows} rows, scene frames {scene.frame_start}-{scene.frame_end})")
    print(f"[demo] wrote {len(pngs)} preview frames to {preview}{os.sep}")
    print(json.dumps(summary), flush=True)


def _main(argv=None) -> int:
    args = _parser().parse_args(argv)
    t_start = time.perf_counter()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    src = Path(args.input).resolve()
    if not src.is_file():
        print(f"error: input file not found: {src}", file=sys.stderr)
        return 2

    bpy = import_bpy()
    import addon_utils

    bpy.ops.wm.read_homefile(use_empty=True)
    addon_utils.enable(ADDON, default_set=True)
    if not hasattr(bpy.ops.lsmplify, "solve"):
        print("error: the LSMPLify add-on did not register", file=sys.stderr)
        return 1
    times: dict[str, float] = {}
    rig, mesh, action, solver_used = _import_and_solve(bpy, src, args, times)
    outputs = _write_outputs(bpy, out, args, times)
    seconds = time.perf_counter() - t_start
    _report(bpy, src, rig, mesh, action, solver_used, outputs, times, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
