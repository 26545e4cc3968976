"""The Results panel's fit figures: the core's fit report (``core.fit_report``) in the panel's
words (the worst keypoints and segments by name, a plain-language verdict, the warnings), and
the keypoint calibration a solve found, kept on its action for Refine and the .npz.

The report is measured on at most REPORT_FRAMES frames spread evenly over the take: its
per-keypoint and per-segment means need no more, and on every frame it would cost a good part
of the solve (CPU time on 01_01.bvh cut to 10,000 frames: 0.6-0.7 s for 1,024 frames, against
10.8 s for the solve).
"""

from __future__ import annotations

import dataclasses
import textwrap

import numpy as np

REPORT_FRAMES = 512
OFFSETS_PROP = "lsmplify_keypoint_offsets"  # on an action: (K * 3) metres, the solve's calibration
OFFSETS_LAYOUT_PROP = "lsmplify_offsets_layout"  # ... and the layout whose keypoints they are
PANEL_CHARS = 42  # a line of the sidebar at its usual width


def report_frames(num_frames: int) -> np.ndarray:
    """The frames the report is measured on: all of them, or REPORT_FRAMES evenly spread."""
    if num_frames <= REPORT_FRAMES:
        return np.arange(num_frames)
    return np.unique(np.linspace(0, num_frames - 1, REPORT_FRAMES).round().astype(np.int64))


def solve_report(model, prepared, solution):
    """(``FitReport`` of the solution on ``report_frames``, frames measured); no bpy (a worker
    thread runs it after the solve)."""
    from ..core.fit_report import fit_report

    idx = report_frames(prepared.num_frames)
    if idx.size < prepared.num_frames:
        raw = getattr(solution, "fit_error_mm_raw", None)
        solution = dataclasses.replace(
            solution,
            rotmats=solution.rotmats[idx],
            trans=solution.trans[idx],
            fit_error_mm=np.asarray(solution.fit_error_mm)[idx],
            fit_error_mm_raw=None if raw is None else np.asarray(raw)[idx],
        )
        prepared = prepared.cut(idx)
    return fit_report(model, prepared, solution), int(idx.size)


def verdict_text(verdict: str) -> str:
    """The core's verdict ('good', or 'check the head: neck 12 deg off the capture; ...') in words."""
    from ..core.fit_report import KEYPOINT_CHECK_MM, SEGMENT_CHECK_DEG

    if verdict == "good":
        return (
            f"Good: every keypoint within {KEYPOINT_CHECK_MM:.0f} mm and every segment within "
            f"{SEGMENT_CHECK_DEG:.0f} deg of the capture"
        )
    return verdict[:1].upper() + verdict[1:]


def store_report(settings, report, measured: int, frames: int) -> None:
    """The report into the scene's result fields (what the panel draws)."""
    settings.result_verdict = verdict_text(report.verdict)
    settings.result_worst_keypoints = ", ".join(
        f"{n} {v:.0f} mm" for n, v in report.worst_keypoints if np.isfinite(v)
    )
    settings.result_worst_segments = ", ".join(
        f"{n.replace('_', ' ')} {v:.1f} deg" for n, v in report.worst_segments if np.isfinite(v)
    )
    settings.result_warnings = "\n".join(report.warnings)
    raw = report.fit_error_mm_mean_raw
    settings.result_fit_raw_mm = float(raw) if report.calibrated and np.isfinite(raw) else 0.0
    settings.result_report_frames = (
        "" if measured >= frames else f"measured on {measured:,} of {frames:,} frames"
    )


def clear_report(settings) -> None:
    for name in ("result_verdict", "result_worst_keypoints", "result_worst_segments"):
        setattr(settings, name, "")
    settings.result_warnings = settings.result_report_frames = ""
    settings.result_fit_raw_mm = 0.0


def wrapped(text: str, width: int = PANEL_CHARS) -> list[str]:
    """``text`` in lines that fit the sidebar (its own line breaks kept)."""
    return [line for part in text.split("\n") for line in (textwrap.wrap(part, width) or [""])]


def draw_report(col, s) -> None:
    """The verdict, the worst keypoints and segments and the warnings, wrapped to the sidebar."""
    if not s.result_verdict:
        return
    for i, line in enumerate(wrapped(s.result_verdict)):
        col.label(
            text=line,
            icon=("CHECKMARK" if s.result_verdict.startswith("Good") else "ERROR")
            if i == 0
            else "BLANK1",
        )
    for title, text in (
        ("Worst keypoints", s.result_worst_keypoints),
        ("Worst segments", s.result_worst_segments),
    ):
        if text:
            for i, line in enumerate(wrapped(f"{title}: {text}")):
                col.label(text=line if i == 0 else f"  {line}")
    for line in wrapped(s.result_warnings):
        if line:
            col.label(text=line, icon="ERROR")
    if s.result_report_frames:
        col.label(text=f"({s.result_report_frames})")


def tag_offsets(action, offsets, layout_name: str) -> None:
    """Keep a solve's keypoint calibration (K, 3) on its action (for Refine and the .npz)."""
    if offsets is None:
        return
    o = np.asarray(offsets, np.float64)
    action[OFFSETS_PROP] = [float(x) for x in o.reshape(-1)]
    action[OFFSETS_LAYOUT_PROP] = str(layout_name)


def action_offsets(action, layout):
    """The keypoint calibration kept on ``action`` for ``layout`` as (K, 3), or None (none kept,
    another layout, or not K x 3 values: the core checks the values when it uses them)."""
    if action is None or OFFSETS_PROP not in action:
        return None
    if action.get(OFFSETS_LAYOUT_PROP) != layout.name:
        return None
    values = np.asarray(list(action[OFFSETS_PROP]), dtype=np.float64)
    if values.size != 3 * layout.num_keypoints:
        return None
    return values.reshape(layout.num_keypoints, 3)
