"""The project's own error types.

Every failure a user can cause (a bad file, a wrong option, a model that is not SMPL)
is raised as one of these, with a message that says what was wrong and what to do.
The Blender side and the CLI catch ``LSMPLifyError`` and show the message; anything
else escaping is a bug.
"""


class LSMPLifyError(Exception):
    """Base class: a problem the user can fix, with a message saying how."""


class InputError(LSMPLifyError):
    """A keypoint file or keypoint array that cannot be used as given."""


class LayoutError(InputError):
    """The keypoint layout is unknown, ambiguous or does not match the data."""


class ModelFileError(LSMPLifyError):
    """A body-model file (or network checkpoint) that is missing, unsafe or malformed."""


class UnsafePickleError(ModelFileError):
    """A pickle asked for a class outside the allow-list; nothing was executed."""


class OptionError(LSMPLifyError):
    """A command-line option (or the matching Blender setting) outside its valid range."""


class OutputError(LSMPLifyError):
    """The output cannot be written where asked (or would replace one of the inputs)."""
