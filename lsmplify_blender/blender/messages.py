"""The core's messages in Blender's terms: the command-line flags and Python calls they
name become the Blender controls that do the same (the core's words are right for the CLI,
where they come from; Blender users never see a flag)."""

from __future__ import annotations

import re

# (pattern, replacement), applied in order; each CLI flag or call the core mentions has one.
_BLENDER_TERMS = (
    (
        re.compile(r"pass the skeleton with --asf PATH \(read_keypoints\(path, asf=PATH\)\)"),
        "choose it as the ASF Skeleton (an option of Import Keypoints, and in the LSMPLify panel)",
    ),
    (
        re.compile(r"give this skeleton with --asf \S+?\."),
        "choose this skeleton as the ASF Skeleton (an option of Import Keypoints).",
    ),
    (
        re.compile(r"--asf must name an \.asf skeleton file"),
        "The ASF Skeleton must be an .asf skeleton file",
    ),
    (
        re.compile(
            r"CMU-subset clips are read with read_cmu_subset\(path, skeleton_json\); otherwise save as"
        ),
        "CMU-subset clips are read by the command line tool only; save as",
    ),
    (re.compile(r"\(--layout[^)]*\)"), "(the Layout setting in the LSMPLify panel)"),
    (re.compile(r"\(--units\)"), "(the Units setting in the LSMPLify panel)"),
    (
        re.compile(r"use --device auto or cpu\."),
        "choose Auto or CPU as the Compute Device in the add-on preferences.",
    ),
    # the SMPL-motion reader speaks of the CLI's --init and --out; in Blender it is Import/Export SMPL
    (re.compile(r" \(--init\)"), ""),
    (re.compile(r"--init needs"), "Import SMPL needs"),
    (re.compile(r"choose another --out"), "choose another file"),
    # the foot step's given ground: in Blender the panel's Ground Height, turned into metres
    (
        re.compile(
            r"ground (\S+): give the floor height in metres \(Y up, in the output's world\)"
        ),
        (
            r"the Ground Height in the LSMPLify panel is \1 m from the source's origin: give the "
            "floor's height (Z in the scene)"
        ),
    ),
)


def in_blender_terms(message: str) -> str:
    """``message`` with every CLI flag or Python call it names replaced by the Blender control."""
    for pattern, replacement in _BLENDER_TERMS:
        message = pattern.sub(replacement, message)
    return message
