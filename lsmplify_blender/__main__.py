"""``python -m lsmplify_blender``: the command-line interface of the core (no Blender needed)."""

import contextlib
import os
import sys

from .core.cli import main

# commands that end without the interpreter's shutdown: with torch loaded it spends ~0.33 s
# tearing down modules and collecting objects nobody reads again. ``batch`` keeps the normal
# exit: its worker pool and multiprocessing's fork server are stopped by atexit handlers.
FAST_EXIT_COMMANDS = ("convert", "eval")


def _exit(rc: int) -> None:
    """End the process with status ``rc``: at once (``os._exit``, after flushing stdout and
    stderr; every output file is closed by then: the writers use ``with``) for the commands
    above, else through ``sys.exit``. Only this entry point does it, never a library call."""
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command in FAST_EXIT_COMMANDS:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to write to
                stream.flush()
        os._exit(rc)
    sys.exit(rc)


_exit(main())
