"""The Blender side of LSMPLify: rig building, keyframe writing, operators and the panel.

Kept light on purpose: importing this package imports nothing; the modules import bpy
(and the core, with torch, on first use) when they are imported themselves.
``register``/``unregister`` are called by the add-on's top-level ``register``.
"""


def _modules():
    from . import batch, joint_map, operators, panel, preferences, properties

    return preferences, properties, operators, joint_map, batch, panel


def _classes():
    out = []
    for mod in _modules():
        out.extend(mod.CLASSES)
    return out


def register():
    import bpy

    from . import batch, operators, properties

    for cls in _classes():
        bpy.utils.register_class(cls)
    properties.register_properties()
    bpy.types.TOPBAR_MT_file_import.append(operators.menu_import)
    bpy.types.TOPBAR_MT_file_import.append(batch.menu_import)
    bpy.types.TOPBAR_MT_file_export.append(operators.menu_export)


def unregister():
    import bpy

    from . import batch, operators, properties

    bpy.types.TOPBAR_MT_file_import.remove(batch.menu_import)
    bpy.types.TOPBAR_MT_file_export.remove(operators.menu_export)
    bpy.types.TOPBAR_MT_file_import.remove(operators.menu_import)
    properties.unregister_properties()
    for cls in reversed(_classes()):
        if getattr(cls, "is_registered", True):
            bpy.utils.unregister_class(cls)
