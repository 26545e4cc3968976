"""Add-on preferences: body model and compute device.

``bl_idname`` is the add-on's own package, found relatively (``lsmplify_blender`` when run
from a checkout, ``bl_ext.user_default.lsmplify_blender`` once installed as an extension).
A body-model file is hostile until validated, so setting the path loads nothing: the file
is validated with the core's loader the first time it is needed (a solve or an import
that builds a rig) or when Check Model is pressed, and the result is shown here.
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
    ("MPS", "Apple MPS", "Apple Silicon GPU through Metal Performance Shaders"),
)
DEVICE_LABELS = {"cpu": "CPU", "cuda": "CUDA", "mps": "Apple MPS"}

# Validation results by absolute model path: '' (it loads) or the error text, and the
# model's name. Kept out of the preferences' RNA so that a stale error is never saved.
_MODEL_STATUS: dict[str, str] = {}
_MODEL_NAMES: dict[str, str] = {}


def model_key(path: str) -> str:
    return bpy.path.abspath(path) if path else ""


def record_model_status(path: str, error: str, name: str = "") -> None:
    """What a load of the model at ``path`` found: ``error`` ('' when it loaded) and its name."""
    key = model_key(path)
    _MODEL_STATUS[key] = error
    _MODEL_NAMES[key] = name


def checked_model_status(path: str):
    """The recorded status of ``path`` ('' or the error), or None when it was not checked yet."""
    return _MODEL_STATUS.get(model_key(path))


def model_status(path: str) -> str:
    """'' when the model at ``path`` loads, else the error text (validated once per path, with
    the core's loader, which refuses unsafe or malformed files with an LSMPLifyError)."""
    key = model_key(path)
    if key not in _MODEL_STATUS:
        from ..core.body_model import load_model_data
        from ..core.errors import LSMPLifyError

        try:
            data = load_model_data(key or None)
            record_model_status(path, "", data.name)
        except LSMPLifyError as exc:
            record_model_status(path, str(exc))
        except Exception as exc:  # noqa: BLE001 (a preference must never crash Blender)
            record_model_status(path, f"Could not read the body model: {type(exc).__name__}: {exc}")
    return _MODEL_STATUS[key]


def _model_path_update(self, _context):
    # nothing is loaded here: a crafted file must not be read on a mere change of the path
    _MODEL_STATUS.pop(model_key(self.model_path), None)
    from .model_cache import clear_model_cache

    clear_model_cache()


class LSMPLIFY_OT_check_model(bpy.types.Operator):
    """Validate the body model file set in the preferences (the result is shown there)"""

    bl_idname = "lsmplify.check_model"
    bl_label = "Check Model"

    def execute(self, context):
        prefs = get_preferences(context)
        path = prefs.model_path if prefs is not None else ""
        _MODEL_STATUS.pop(model_key(path), None)
        err = model_status(path)
        if err:
            self.report({"ERROR"}, err)
            return {"CANCELLED"}
        self.report(
            {"INFO"}, f"LSMPLify: the body model '{_MODEL_NAMES.get(model_key(path), '')}' is valid"
        )
        return {"FINISHED"}


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

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "model_path")
        err = checked_model_status(self.model_path)
        row = col.row()
        if not self.model_path:
            row.label(text="Using: the embedded open model", icon="CHECKMARK")
        elif err is None:
            row.label(text="Not checked yet: it is validated when first used.", icon="QUESTION")
        elif err:
            box = col.box()
            box.alert = True
            for i, line in enumerate(_wrap(err, 90)):
                box.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
        else:
            name = _MODEL_NAMES.get(model_key(self.model_path), "")
            row.label(text=f"Using: {name or 'embedded open model'}", icon="CHECKMARK")
        row.operator(LSMPLIFY_OT_check_model.bl_idname, icon="VIEWZOOM")
        row = col.row()
        row.prop(self, "device")
        row.label(text=device_summary(self.device))


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
    """What the device choice means here, e.g. 'Auto: CPU'; an unavailable device says so."""
    from ..core.device import resolve_device
    from ..core.errors import LSMPLifyError

    label = {i[0]: i[1] for i in DEVICE_ITEMS}.get(choice, choice)
    try:
        dev = resolve_device(choice.lower())
    except LSMPLifyError:
        return f"{label}: not available here"
    return f"{label}: {DEVICE_LABELS.get(dev.type, dev.type)}"


def get_preferences(context=None):
    """The add-on's preferences, or None when the add-on is not enabled (modules used directly)."""
    ctx = context or bpy.context
    addon = ctx.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


CLASSES = (LSMPLIFY_OT_check_model, LSMPLifyPreferences)
