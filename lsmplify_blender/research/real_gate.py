"""The real-capture gate: does the default solver meet issue 9's targets, and is it at or below
analytic IK on every segment and on MPVE? (Printed by ``eval --real``; figures, not asserted.)

Targets (per source kind, mean over the held-out frames of each segment):
- orientation: mean <= 8 deg for every segment from positions only; mean <= 5 and p95 <= 12 when
  the solver uses the source's rotations;
- direction: head, neck, hands, feet mean <= 8 deg, every other segment <= 5 deg;
- no frame with a folded head (neck direction > 45 deg off the captured neck);
- plug-in pass: the mean fit from the solver's own output rises by at most 2 %, and the pose MPVE
  from the 10-deg perturbed start goes down.
"""

from __future__ import annotations

from typing import Any

ORIENT_MEAN_POSITIONS = 8.0
ORIENT_MEAN_ROTATIONS, ORIENT_P95_ROTATIONS = 5.0, 12.0
DIRECTION_LOOSE = 8.0  # head, neck, hands, feet
DIRECTION_TIGHT = 5.0
PLUG_IN_FIT_RISE = 0.02
BASELINE = "analytic"
TIE_DEG = 0.5  # closer than this to the baseline counts as 'at' it


def _loose(segment: str) -> bool:
    return segment in ("head", "neck") or segment.endswith(("_hand", "_foot"))


def _over(stats: dict, key: str, limit: float) -> bool:
    v = stats.get(key)
    return v is not None and v > limit


def target_misses(row: dict) -> dict[str, list[str]]:
    """Segments of one solver on one source that miss each target ('segment mean/p95')."""
    o, d = row["orientation"], row["direction"]
    out = {
        "orientation_positions": [
            f"{s} {v['mean']:.1f}" for s, v in o.items() if _over(v, "mean", ORIENT_MEAN_POSITIONS)
        ],
        "orientation_rotations": [
            f"{s} {v['mean']:.1f}/{v['p95']:.1f}"
            for s, v in o.items()
            if _over(v, "mean", ORIENT_MEAN_ROTATIONS) or _over(v, "p95", ORIENT_P95_ROTATIONS)
        ],
        "direction": [
            f"{s} {v['mean']:.1f}"
            for s, v in d.items()
            if _over(v, "mean", DIRECTION_LOOSE if _loose(s) else DIRECTION_TIGHT)
        ],
    }
    if row.get("head_folded_frames"):
        out["folded_head_frames"] = [str(row["head_folded_frames"])]
    return out


def worse_than(row: dict, base: dict) -> dict[str, list[str]]:
    """Segments (and MPVE) where a solver is above the baseline by more than TIE_DEG."""
    out = {}
    for key in ("orientation", "direction"):
        out[key] = [
            f"{s} {v['mean']:.1f} vs {base[key][s]['mean']:.1f}"
            for s, v in row[key].items()
            if s in base[key]
            and v["mean"] is not None
            and base[key][s]["mean"] is not None
            and v["mean"] > base[key][s]["mean"] + TIE_DEG
        ]
    if row.get("mpve") is not None and base.get("mpve") is not None and row["mpve"] > base["mpve"]:
        out["mpve"] = [f"{row['mpve']:.1f} vs {base['mpve']:.1f} mm"]
    return out


def plug_in_misses(plug: dict) -> list[str]:
    out = []
    own, pert = plug.get("own") or {}, plug.get("perturbed") or {}
    if (
        own.get("fit_before")
        and own.get("fit_after") is not None
        and own["fit_after"] > own["fit_before"] * (1 + PLUG_IN_FIT_RISE)
    ):
        out.append(f"fit from its own output {own['fit_before']:.1f} -> {own['fit_after']:.1f} mm")
    if (
        pert.get("mpve_before") is not None
        and pert.get("mpve_after") is not None
        and pert["mpve_after"] >= pert["mpve_before"]
    ):
        out.append(
            f"MPVE from the perturbed start {pert['mpve_before']:.1f} -> {pert['mpve_after']:.1f} mm"
        )
    return out


def gate(summary: dict, plug: dict, default: str) -> dict:
    """{source: {'targets': ..., 'worse_than_analytic': ..., 'plug_in': [...], 'passes': bool}} for the default."""
    out = {}
    for kind, row in summary.get(default, {}).items():
        g: dict[str, Any] = dict(
            targets=target_misses(row), plug_in=plug_in_misses(plug.get(kind, {}))
        )
        base = summary.get(BASELINE, {}).get(kind)
        if base is not None and default != BASELINE:
            g["worse_than_analytic"] = worse_than(row, base)
        fails = [v for k, v in g["targets"].items() if k != "orientation_rotations"] + [
            g["plug_in"]
        ]
        fails += list(g.get("worse_than_analytic", {}).values())
        g["passes"] = not any(fails)
        out[kind] = g
    return out
