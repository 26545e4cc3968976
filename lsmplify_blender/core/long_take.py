"""A long take converted in blocks of frames, so that memory stays bounded (issue 12: 1M frames
of BVH needed 8 GB just to read and prepare).

``convert_long_take`` is what ``cli.convert_take`` calls first: for a .npy or .bvh take of at
least LONG_TAKE_FRAMES frames (``formats.blocks``) it reads, prepares, solves and keeps the
result block by block, and gives the same output as the whole-take path (the test compares
them on a real CMU take with a small block):

1. the layout, units and up axis are detected on a sample of the take (evenly spaced windows;
   the whole take when it is short) and then given to every block's ``prepare``;
2. pass 1 gathers what the whole take decides: the limb-length statistics of the noise estimate
   (combined exactly, ``denoise.combine_limb_stats``), the measured mask (to check that every
   gap is shorter than the overlap, so its interpolation is the whole take's) and every frame's
   bone lengths (``shape_inverse.pair_lengths``, 29 floats a frame) for the shape;
3. with smoothing, pass 2 gathers the bone lengths of the smoothed keypoints instead;
4. the shape is fitted once to the medians of all frames' lengths (as ``solver._shape`` does);
5. pass 3 solves each block with OVERLAP_FRAMES of context either side (the Gaussian sees the
   same neighbours as in the whole take) through ``solver.solve`` (its shape and sigma given),
   keeps the block's own frames, and the motion is written once, atomically.

Frame-independent solvers (analytic IK, the network frame by frame, the bone-rotation transfer)
give the whole take's result; the optimisation baselines and whatever a solve estimates over
all its frames run per block (a note says so). Takes this path cannot stream exactly (a gap
longer than the overlap, a block the reader refuses) return None: the whole-take path runs.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from .denoise import (
    combine_limb_stats,
    limb_length_stats,
    noise_from_limb_stats,
    smooth_over_time,
    smooth_sigma_seconds,
)
from .errors import InputError
from .formats.blocks import open_blocks
from .keypoints import KeypointSequence
from .plausibility import check_plausible
from .prepare import PreparedKeypoints, prepare
from .shape_inverse import PAIRS, fit_betas_auto, median_lengths, pair_lengths
from .solver import NETWORK_CHUNK, solve

# fewer frames: the whole-take path, one pass (bench_long_take.py, CMU BVH of 38 nodes, analytic:
# 1.69 GB peak at 99,999 frames, so half that keeps it near 1 GB for rigs with more joints)
LONG_TAKE_FRAMES = 50_000
BLOCK_FRAMES = 16_384  # frames solved at a time
OVERLAP_FRAMES = 256  # context either side of a block (more when the Gaussian is wider)
SAMPLE_FRAMES = 32_768  # frames the layout, units and up axis are detected on
SAMPLE_WINDOWS = 16
MAX_BLOCK_NOTES = 12  # distinct solver notes kept from the blocks


@dataclasses.dataclass
class _Take:
    """What ``cli.finish_take`` reads of a prepared take (``PreparedKeypoints``'s names)."""

    layout: object
    fps: float
    units: str
    up: str
    num_frames: int
    notes: list[str]
    sample: PreparedKeypoints | None = None  # the detection sample (the fit report's frames)
    source_names: list[str] | None = None  # the file's joint names


@dataclasses.dataclass
class _Motion:
    """What ``cli.finish_take`` reads of a solution (``solver.Solution``'s names)."""

    poses: np.ndarray  # (T, 72) float32
    trans: torch.Tensor
    betas: torch.Tensor
    fit_error_mm: np.ndarray
    mpbe_mm: float
    solver: str
    device: str
    seconds: float
    notes: list[str]
    noise_mm: float
    smooth_s: float
    rotations: bool
    fit_error_mm_raw: np.ndarray | None = None  # (T,) to the keypoints as captured
    keypoint_offsets: np.ndarray | None = None  # the first block's calibration (calibration.py)
    contacts: np.ndarray | None = None  # (T, 2) bool, each block's (contacts.py)
    ground_height: float = float("nan")  # the median of the blocks' grounds
    feet: dict = dataclasses.field(default_factory=dict)  # no whole-take feet report by blocks


def convert_long_take(args, model, input_path, out_path, *, block_frames=None, min_frames=None):
    """``cli.convert_take`` by blocks (the module's steps), or None for the whole-take path."""
    from .cli import finish_take

    reader = open_blocks(input_path)
    threshold = LONG_TAKE_FRAMES if min_frames is None else min_frames
    if reader is None or reader.num_frames < threshold:
        return None
    t0 = time.perf_counter()
    take, forced = _detect(args, model, reader)
    block = int(block_frames or BLOCK_FRAMES)
    n_chunk = NETWORK_CHUNK if args.chunk is None else max(int(args.chunk), 1)
    block = -(-block // n_chunk) * n_chunk  # whole network chunks, aligned as in one solve
    gathered = _gather(reader, model, forced, block, args.smooth)
    if gathered is None:
        return None
    noise_mm, measured, lengths = gathered
    sigma = smooth_sigma_seconds(args.smooth, noise_mm, take.fps)
    margin = max(OVERLAP_FRAMES, int(3.0 * sigma * take.fps + 0.5) + 1)
    margin = -(-margin // n_chunk) * n_chunk
    if _longest_gap(measured) > margin:
        return None
    gaps = int((~measured & measured.any(0)).sum())
    del measured
    if sigma > 0:
        lengths = _smoothed_lengths(reader, model, forced, block, margin, sigma)
    shape = fit_betas_auto(model, *median_lengths(lengths))
    del lengths
    motion = _solve_blocks(args, model, reader, forced, block, margin, sigma, shape)
    motion.mpbe_mm, motion.noise_mm, motion.smooth_s = shape.mpbe_mm, noise_mm, sigma
    if sigma > 0:
        motion.notes.insert(
            0,
            f"keypoint noise estimated at {noise_mm:.1f} mm (limb length changes): smoothed over "
            f"time with a Gaussian of {sigma:.3f} s" + (" (auto)" if args.smooth == "auto" else ""),
        )
    if gaps:
        take.notes.append(f"filled {gaps} missing keypoint samples by interpolation over time")
    blocks = -(-reader.num_frames // block)
    per_block = (
        "; the optimisation runs per block"
        if args.solver == "optimize" or args.refine > 0
        else "; the pose of every frame is solved as in one pass"
    )
    take.notes.append(
        f"long take: converted in {blocks} blocks of {block} frames with {margin} frames of "
        f"overlap (memory bounded); layout, units and up axis detected on "
        f"{min(reader.num_frames, SAMPLE_FRAMES)} sampled frames, the shape and the noise "
        f"estimate from every frame{per_block}; the keypoint calibration and the feet's "
        "ground are estimated per block (the first block's offsets and the blocks' median ground "
        "are written), the per-keypoint and per-segment fit figures on the sampled frames; no "
        "skating / penetration figures ('feet' in the JSON line)"
    )
    report = _sample_report(model, take, motion)
    feet = {}
    if motion.contacts is not None:
        feet = dict(contacts=motion.contacts, ground_height=np.float32(motion.ground_height))
    return finish_take(args, model, input_path, out_path, take, motion, t0, report, feet)


def _sample_report(model, take: _Take, motion: _Motion):
    """``fit_report`` of the detection sample's frames (per keypoint and segment), with the
    whole take's mean fit errors and per-frame raw errors."""
    from types import SimpleNamespace

    from .body_model import rotmats_from_axis_angle
    from .fit_report import fit_report

    frames = np.concatenate([np.arange(a, b) for a, b in _sample_starts(take.num_frames)])
    rot = rotmats_from_axis_angle(torch.as_tensor(motion.poses[frames], dtype=torch.float64))
    raw = motion.fit_error_mm_raw
    sampled = SimpleNamespace(
        rotmats=rot.to(model.dtype),
        betas=motion.betas,
        trans=motion.trans[frames].to(model.dtype),
        keypoint_offsets=motion.keypoint_offsets,
        fit_error_mm=motion.fit_error_mm[frames],
        fit_error_mm_raw=None if raw is None else raw[frames],
    )
    assert take.sample is not None  # _detect keeps it
    report = fit_report(model, take.sample, sampled, source_names=take.source_names)
    with np.errstate(invalid="ignore"):
        report.fit_error_mm_mean = float(np.nanmean(motion.fit_error_mm))
        if raw is not None:
            report.fit_error_mm_mean_raw = float(np.nanmean(raw))
    report.fit_error_mm_raw = raw
    return report


def _sample_starts(total: int) -> list[tuple[int, int]]:
    """Frame ranges of the detection sample: the whole take, or evenly spaced windows."""
    if total <= SAMPLE_FRAMES:
        return [(0, total)]
    width = SAMPLE_FRAMES // SAMPLE_WINDOWS
    starts = np.linspace(0, total - width, SAMPLE_WINDOWS).astype(int)
    return [(int(s), int(s) + width) for s in starts]


def _detect(args, model, reader) -> tuple[_Take, dict]:
    """Layout, units, up axis and fps resolved on the sample (the user's options first), as the
    options every block is prepared with; the sample's notes stand for the take's."""
    parts = [reader.read(a, b) for a, b in _sample_starts(reader.num_frames)]
    first = parts[0]
    sample = dataclasses.replace(
        first,
        positions=np.concatenate([p.positions for p in parts]),
        confidence=None
        if first.confidence is None
        else np.concatenate([p.confidence for p in parts]),
        rotations=None,
        rest_positions=None,
    )
    assert isinstance(sample, KeypointSequence)
    prepared = prepare(
        sample, model, layout=args.layout, units=args.units, up=args.up, fps=args.fps
    )
    check_plausible(prepared)
    forced = dict(
        layout=prepared.layout.name, units=prepared.units, up=prepared.up, fps=prepared.fps
    )
    notes = [n for n in prepared.notes if not n.startswith("filled ")]
    take = _Take(
        prepared.layout,
        prepared.fps,
        prepared.units,
        prepared.up,
        reader.num_frames,
        notes,
        prepared,
        first.names,
    )
    return take, forced


def _ranges(total: int, block: int, margin: int = 0):
    """(start, stop) of each block and (a, b) of it with ``margin`` frames of context."""
    for s in range(0, total, block):
        e = min(s + block, total)
        yield s, e, max(s - margin, 0), min(e + margin, total)


def _gather(reader, model, forced, block, smooth):
    """Pass 1: (noise estimate mm, (T, K) measured mask, (T, len(PAIRS)) bone lengths or None
    when smoothing is forced and they must come from pass 2); None if a block is refused."""
    total = reader.num_frames
    stats, measured, lengths = None, None, None
    keep_lengths = isinstance(smooth, str) or float(smooth) <= 0
    for s, e, _, _ in _ranges(total, block):
        try:
            p = prepare(reader.read(s, e), model, **forced)
        except InputError:
            return None  # the whole-take path gives the take's own answer
        if measured is None:
            measured = np.zeros((total, p.measured.shape[1]), dtype=bool)
            lengths = np.empty((total, len(PAIRS))) if keep_lengths else None
        measured[s:e] = p.measured
        if lengths is not None:
            lengths[s:e] = pair_lengths(*p.length_samples())
        st = limb_length_stats(p)
        stats = st if stats is None else combine_limb_stats(stats, st)
    assert stats is not None and measured is not None  # a take has at least one block
    return noise_from_limb_stats(stats), measured, lengths


def _longest_gap(measured: np.ndarray) -> int:
    """The longest run of unmeasured frames of a keypoint that is measured somewhere."""
    longest = 0
    for k in np.nonzero(measured.any(0))[0]:
        seen = np.flatnonzero(measured[:, k])
        runs = np.diff(np.concatenate([[-1], seen, [measured.shape[0]]])) - 1
        longest = max(longest, int(runs.max()))
    return longest


def _smoothed_lengths(reader, model, forced, block, margin, sigma) -> np.ndarray:
    """Pass 2: every frame's bone lengths after smoothing (each block smoothed with its context)."""
    lengths = np.empty((reader.num_frames, len(PAIRS)))
    for s, e, a, b in _ranges(reader.num_frames, block, margin):
        p = smooth_over_time(prepare(reader.read(a, b), model, **forced), sigma)
        lengths[s:e] = pair_lengths(*p.cut(slice(s - a, e - a)).length_samples())
    return lengths


def _solve_blocks(args, model, reader, forced, block, margin, sigma, shape) -> _Motion:
    """Pass 3: every block solved with its context; the block's own frames kept."""
    total = reader.num_frames
    poses = np.empty((total, 72), np.float32)
    trans = np.empty((total, 3))
    err = np.empty(total)
    betas = shape.betas.cpu().double().numpy()
    notes: list[str] = []
    more, seconds, used, with_rotations = 0, 0.0, args.solver, False
    raw, contacts, offsets, grounds = None, None, None, []
    for s, e, a, b in _ranges(total, block, margin):
        p = prepare(reader.read(a, b), model, **forced)
        sol = solve(
            p,
            model,
            solver=args.solver,
            refine=args.refine,
            betas=betas,
            smooth=sigma,
            network_chunk=args.chunk,
            rotations=args.rotations,
            calibrate=getattr(args, "calibrate", "auto"),
            lock_feet=getattr(args, "lock_feet", "auto"),
            ground=getattr(args, "ground", None),
        )
        own = slice(s - a, e - a)
        if sol.fit_error_mm_raw is not None:
            raw = np.empty(total) if raw is None else raw
            raw[s:e] = sol.fit_error_mm_raw[own]
        if sol.contacts is not None:
            contacts = np.zeros((total, 2), bool) if contacts is None else contacts
            contacts[s:e] = sol.contacts[own]
            grounds.append(sol.ground_height)
        offsets = sol.keypoint_offsets if offsets is None else offsets
        poses[s:e] = sol.poses[own]
        trans[s:e] = sol.trans[own].cpu().double().numpy()
        err[s:e] = sol.fit_error_mm[own]
        seconds += sol.seconds
        used, with_rotations = sol.solver, with_rotations or sol.rotations
        for note in sol.notes:
            if note.startswith("keypoint noise estimated") or note in notes:
                continue
            if len(notes) < MAX_BLOCK_NOTES:
                notes.append(note)
            else:
                more += 1
    if more:
        notes.append(f"(+{more} more notes from the blocks' solves)")
    return _Motion(
        poses=poses,
        trans=torch.as_tensor(trans),
        betas=shape.betas.to(model.device),
        fit_error_mm=err,
        mpbe_mm=float("nan"),
        solver=used,
        device=str(model.device),
        seconds=seconds,
        notes=notes,
        noise_mm=float("nan"),
        smooth_s=0.0,
        rotations=with_rotations,
        fit_error_mm_raw=raw,
        keypoint_offsets=offsets,
        contacts=contacts,
        ground_height=float(np.median(grounds)) if grounds else float("nan"),
    )
