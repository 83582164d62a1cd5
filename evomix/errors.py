"""Exception hierarchy: one root class, so the CLI can catch every expected failure in one place.

(librosa ``util/exceptions.py``.)
"""


class EvomixError(Exception):
    """Root of every error evomix raises on purpose (bad input, bad option, bad file)."""


class ParameterError(EvomixError, ValueError):
    """An option or argument has an invalid value; the message names it and the fix."""


class AudioFileError(EvomixError):
    """An audio file cannot be used; the message names the file and what is wrong."""
