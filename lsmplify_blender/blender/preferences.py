"""Add-on preferences: body model, compute device, optional network checkpoint.

``bl_idname`` is the add-on's own package, found relatively (``lsmplify_blender`` when run
from a checkout, ``bl_ext.user_default.lsmplify_blender`` once installed as an extension).
The body-model path is checked when it changes (``load_model_data``); a problem is shown
in the preferences, never raised.
"""
from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty

# This module is <addon>.blender.preferences: the add-on's package is two levels up.
ADDON_ID = __package__.rpartition(".")[0]

DEVICE_ITEMS = (
    ("AUTO", "Auto", "CUDA if available, then Apple MPS, then CPU"),
    ("CPU", "CPU", "Always compute on the CPU"),
    ("CUDA", "CUDA", "An NVIDIA GPU through CUDA (needs a CUDA build of torch)"),
    ("MPS", "MPS", "Apple Silicon GPU through Metal"),
)

# Validation results by model path, filled by the update callback (preferences cannot hold
# transient text in their RNA without saving it, and a stale error must not be saved).
_MODEL_STATUS: dict[str, str] = {}


def model_status(path: str) -> str:
    """'' when the model at ``path`` loads, else the error text (checked once per path)."""
    key = bpy.path.abspath(path) if path else ""
    if key not in _MODEL_STATUS:
        from ..core.body_model import load_model_data
        from ..core.errors import LSMPLifyError
        try:
            data = load_model_data(key or None)
            _MODEL_STATUS[key] = ""
            _MODEL_STATUS[key + "\0name"] = data.name
        except LSMPLifyError as exc:
            _MODEL_STATUS[key] = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown to the user, never raised in the UI
            _MODEL_STATUS[key] = f"Could not read the body model: {type(exc).__name__}: {exc}"
    return _MODEL_STATUS[key]


def _model_path_update(self, _context):
    key = bpy.path.abspath(self.model_path) if self.model_path else ""
    _MODEL_STATUS.pop(key, None)
    model_status(self.model_path)
    from .model_cache import clear_model_cache
    clear_model_cache()


class LSMPLifyPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    model_path: StringProperty(
        name="Body Model",
        description="SMPL-format body model (.pkl or .npz, e.g. SMPL_NEUTRAL.pkl). "
                    "Empty: the embedded open model",
        subtype="FILE_PATH",
        default="",
        update=_model_path_update,
    )
    device: EnumProperty(
        name="Compute Device",
        description="Where the solver runs",
        items=DEVICE_ITEMS,
        default="AUTO",
    )
    network_checkpoint: StringProperty(
        name="Network Checkpoint",
        description="Optional custom checkpoint for the network solver (not used yet: the network "
                    "solver falls back to the analytic one)",
        subtype="FILE_PATH",
        default="",
    )

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "model_path")
        err = model_status(self.model_path)
        if err:
            box = col.box()
            box.alert = True
            for i, line in enumerate(_wrap(err, 90)):
                box.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
        else:
            key = bpy.path.abspath(self.model_path) if self.model_path else ""
            name = _MODEL_STATUS.get(key + "\0name", "")
            col.label(text=f"Using: {name or 'embedded open model'}", icon="CHECKMARK")
        row = col.row()
        row.prop(self, "device")
        row.label(text=device_summary(self.device))
        col.prop(self, "network_checkpoint")
        if self.network_checkpoint:
            col.label(text="Stored; the network solver does not use checkpoints yet.", icon="INFO")


def _wrap(text: str, width: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    if cur:
        lines.append(cur)
    return lines or [""]


def device_summary(choice: str) -> str:
    """What the device choice means here, e.g. 'Auto: cpu'; an unavailable device says so."""
    from ..core.device import resolve_device
    from ..core.errors import LSMPLifyError
    try:
        dev = resolve_device(choice.lower())
    except LSMPLifyError:
        return f"{choice.title()}: not available here"
    return f"{'Auto' if choice == 'AUTO' else choice}: {dev.type}"


def get_preferences(context=None):
    """The add-on's preferences, or None when the add-on is not enabled (modules used directly)."""
    ctx = context or bpy.context
    addon = ctx.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


CLASSES = (LSMPLifyPreferences,)
