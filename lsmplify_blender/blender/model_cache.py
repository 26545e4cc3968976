"""The body model the preferences ask for, loaded once and kept (one model at a time).

The core (and with it torch) is imported on first use, not at registration.
"""
from __future__ import annotations

import bpy

from ..core.errors import LSMPLifyError
from .preferences import get_preferences

_MODEL_CACHE: dict = {}


def clear_model_cache() -> None:
    _MODEL_CACHE.clear()


def device_choice(context=None) -> str:
    prefs = get_preferences(context)
    return (prefs.device if prefs is not None else "AUTO").lower()


def model_path(context=None) -> str:
    prefs = get_preferences(context)
    path = prefs.model_path if prefs is not None else ""
    return bpy.path.abspath(path) if path else ""


def get_model(context=None, warn=None):
    """The ``BodyModel`` the preferences ask for, on the chosen device (cached).

    Where a fallback makes sense it is taken and said through ``warn`` (an operator's
    report): a device that is not available falls back to the CPU, and a model file that is
    missing or not a SMPL model falls back to the embedded open model.
    """
    from ..core.body_model import BodyModel, load_model_data
    from ..core.device import resolve_device

    say = warn or (lambda message: print(f"LSMPLify: {message}"))
    path = model_path(context)
    try:
        device = resolve_device(device_choice(context))
    except LSMPLifyError as exc:
        say(f"{exc} Using the CPU.")
        device = resolve_device("cpu")
    key = (path, str(device))
    if key not in _MODEL_CACHE:
        try:
            data = load_model_data(path or None)
        except LSMPLifyError as exc:
            if not path:
                raise
            say(f"{exc} Using the embedded open model instead; fix the body model in the add-on preferences.")
            data = load_model_data(None)
        _MODEL_CACHE.clear()  # one model at a time: they can be large
        _MODEL_CACHE[key] = BodyModel(data, device=device)
    return _MODEL_CACHE[key]
