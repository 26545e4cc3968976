"""The body model the preferences ask for, loaded once and kept (one model at a time).

The core (and with it torch) is imported on first use, not at registration.
"""

from __future__ import annotations

import bpy

from ..core.errors import LSMPLifyError
from .preferences import checked_model_status, get_preferences, record_model_status

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

    A device that is not available falls back to the CPU, said through ``warn`` (an
    operator's report). A model file that cannot be used blocks the run with a
    ``ModelFileError`` naming the preference; the finding is shown in the preferences.
    """
    from ..core.body_model import BodyModel

    say = warn or (lambda message: print(f"LSMPLify: {message}"))
    path = model_path(context)
    device = choose_device(context, say)
    key = (path, str(device))
    if key not in _MODEL_CACHE:
        data = load_preferred_model(path)
        _MODEL_CACHE.clear()  # one model at a time: they can be large
        _MODEL_CACHE[key] = BodyModel(data, device=device)
    return _MODEL_CACHE[key]


def choose_device(context, say):
    """The preferences' compute device, or the CPU (said through ``say``) when it is not available here."""
    from ..core.device import resolve_device

    try:
        return resolve_device(device_choice(context))
    except LSMPLifyError as exc:
        say(f"{exc} Using the CPU; choose another Compute Device in the add-on preferences.")
        return resolve_device("cpu")


def load_preferred_model(path: str):
    """The model data at ``path`` ('' : the embedded open model), validated by the core's loader;
    the result is recorded for the preferences. A file that cannot be used raises a
    ModelFileError that names the Body Model preference."""
    from ..core.body_model import load_model_data
    from ..core.errors import ModelFileError

    if not path:
        return load_model_data(None)
    known = checked_model_status(path)
    if known:
        raise ModelFileError(unusable_model_message(known))
    try:
        data = load_model_data(path)
    except Exception as exc:  # noqa: BLE001 (a bad model file falls back with a warning, never a crash)
        text = (
            str(exc)
            if isinstance(exc, LSMPLifyError)
            else f"could not read it ({type(exc).__name__}: {exc})"
        )
        record_model_status(path, text)
        raise ModelFileError(unusable_model_message(text)) from None
    record_model_status(path, "", data.name)
    return data


def unusable_model_message(error: str) -> str:
    return (
        f"The Body Model set in the add-on preferences (Edit > Preferences > Add-ons > LSMPLify) "
        f"cannot be used: {error} Choose a valid SMPL model file there, or clear the field to use the "
        "embedded open model."
    )
