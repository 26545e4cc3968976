"""``python -m lsmplify_blender``: the command-line interface of the core (no Blender needed)."""

import sys

from .core.cli import main

sys.exit(main())
