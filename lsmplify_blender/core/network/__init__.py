"""The residual IK network (Learnable SMPLify style) trained on rotation-transfer CMU motion.

Import-light: torch + numpy only. ``solve_network`` is the sequential solver entry point,
``refine_network`` the plug-in refinement mode.
"""

from .infer import refine_network, solve_network  # noqa: F401
from .model import CHECKPOINT_PATH, ResidualIKNet, load_network  # noqa: F401
