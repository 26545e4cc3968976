"""Make the small BVH fixtures of the CMU FBX rigs (the other CMU naming dialect) with Blender.

The six CMU FBX takes in ``<data>/cmu_raw/*_cmu.fbx`` (IsaacGymEnvs, BSD-3; CMU motion) use
the cgspeed naming (Hips, LeftUpLeg, Spine1, Neck1, LeftFingerBase, ...), unlike the 131 /
01_01 BVH files (LeftHip, Chest2, lowerneck). The real-capture evaluation must not run
Blender's FBX importer, so this script imports each rig once with ``bpy.ops.import_scene.fbx``,
exports it with ``bpy.ops.export_anim.bvh`` (armature bones -> BVH joints, bone tails -> End
Sites) and writes a short, rounded copy to ``tests/fixtures/cmu_fbx_bvh/``:

- the bind pose the FBX puts before the motion (every rotation zero) dropped;
- every ``step``-th frame (120 -> 30 fps), at most ``--frames`` frames, Frame Time scaled;
- values rounded (4 decimals for offsets/positions, 3 for angles in degrees) so the fixtures
  stay small (< 1 MB together).

The armature is turned from Blender's Z-up world to BVH's Y-up convention before export, so
the file reads like any other BVH (Y up, declared by the reader).

Usage: .venv/bin/python tools/make_fbx_bvh_fixtures.py [--data DIR] [--frames 120]
(``--data``: the mocap data root holding cmu_raw/, default $LSMPLIFY_DATA).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "cmu_fbx_bvh"
# held-out FBX takes (walk, walk, run, gymnastics, dance); 01_01 is the same take as the
# training data's 01_01.amc, so it is left out
TAKES = ("07_01", "08_02", "09_11", "49_08", "55_01")
CREDIT = """CMU FBX rigs exported to BVH by tools/make_fbx_bvh_fixtures.py (Blender's FBX importer and
BVH exporter), every 4th frame (30 fps), at most {frames} frames, values rounded.

Source: NVIDIA-Omniverse/IsaacGymEnvs (assets/amp/motions, BSD-3-Clause, see
LICENSE.IsaacGymEnvs-BSD3 next to the originals in the shared mocap data), motion from the CMU
Graphics Lab Motion Capture Database.
"The data used in this project was obtained from mocap.cs.cmu.edu. The database was created
with funding from NSF EIA-0196217."

Takes: {takes}. These takes are not in the network's training data (held out for
`python -m lsmplify_blender eval --real`).
"""


def export_take(fbx: Path, bvh: Path) -> None:
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.fbx(filepath=str(fbx))
    arm = next(o for o in bpy.data.objects if o.type == "ARMATURE")
    # Blender is Z up; a BVH is Y up: turn the armature -90 deg about X (Blender Z -> BVH Y)
    arm.rotation_euler[0] -= math.pi / 2
    bpy.context.view_layer.update()
    bpy.ops.object.select_all(action="DESELECT")
    arm.select_set(True)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.transform_apply(rotation=True)
    start, end = (round(v) for v in arm.animation_data.action.frame_range)
    bpy.ops.export_anim.bvh(
        filepath=str(bvh),
        frame_start=start,
        frame_end=end,
        root_transform_only=True,
        global_scale=1.0,
    )


def _round(tok: str, digits: int) -> str:
    v = round(float(tok), digits)
    return f"{v:.{digits}f}".rstrip("0").rstrip(".") if v else "0"


def shorten(text: str, step: int, frames: int) -> str:
    """Without the leading bind pose; every ``step``-th frame, at most ``frames`` of them, values rounded."""
    head, motion = re.split(r"^MOTION\s*$", text, maxsplit=1, flags=re.MULTILINE)
    head = re.sub(
        r"(OFFSET)((?:\s+\S+){3})",
        lambda m: m.group(1) + "".join(" " + _round(t, 4) for t in m.group(2).split()),
        head,
    )
    lines = motion.strip().splitlines()
    frame_time = float(lines[1].split(":")[1])
    rows = lines[2:]
    while (
        rows and max(abs(float(v)) for v in rows[0].split()[3:]) < 1e-3
    ):  # the bind pose the FBX puts first
        rows = rows[1:]
    rows = rows[::step][:frames]
    out = []
    for row in rows:
        vals = row.split()
        out.append(" ".join([_round(v, 4) for v in vals[:3]] + [_round(v, 3) for v in vals[3:]]))
    return (
        head
        + "MOTION\n"
        + f"Frames: {len(out)}\n"
        + f"Frame Time: {frame_time * step:.6f}\n"
        + "\n".join(out)
        + "\n"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        default=os.environ.get("LSMPLIFY_DATA"),
        help="mocap data root with cmu_raw/ (default: $LSMPLIFY_DATA)",
    )
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--step", type=int, default=4)
    args = ap.parse_args(argv)
    if not args.data:
        print(
            "give --data DIR (the mocap data root with cmu_raw/) or set LSMPLIFY_DATA",
            file=sys.stderr,
        )
        return 2
    raw = Path(args.data) / "cmu_raw"
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for take in TAKES:
            full = Path(tmp) / f"{take}.bvh"
            export_take(raw / f"{take}_cmu.fbx", full)
            small = OUT / f"{take}_cmu.bvh"
            small.write_text(shorten(full.read_text(), args.step, args.frames))
            print(f"{small.relative_to(ROOT)}: {small.stat().st_size / 1024:.0f} KiB")
    (OUT / "CREDIT.txt").write_text(CREDIT.format(frames=args.frames, takes=", ".join(TAKES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
