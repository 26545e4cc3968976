"""LSMPLify: 3D keypoint motion -> SMPL pose, shape and Blender keyframes.

``core`` needs no Blender (``python -m lsmplify_blender``); the Blender extension's
``register``/``unregister`` below import the Blender side only when Blender calls them.
"""

# The one version number: pyproject.toml reads it (setuptools dynamic version) and
# blender_manifest.toml must say the same (tests/test_version.py).
__version__ = "0.1.0"


def register():
    from .blender import register as _register

    _register()


def unregister():
    from .blender import unregister as _unregister

    _unregister()
