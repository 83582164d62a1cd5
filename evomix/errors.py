"""Exception hierarchy: one root class, so the CLI can catch every expected failure in one place.

(librosa ``util/exceptions.py``.)
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


class EvomixError(Exception):
    """Root of every error evomix raises on purpose (bad input, bad option, bad file)."""


class ParameterError(EvomixError, ValueError):
    """An option or argument has an invalid value; the message names it and the fix."""


class AudioFileError(EvomixError):
    """An audio file cannot be used; the message names the file and what is wrong."""


# the command-line flag of each Python keyword whose name does not simply become --keyword-name
CLI_FLAGS = {"ceiling_dbtp": "--ceiling", "n": "-n", "output": "-o", "max_limiting_db": "--max-limiting"}


def cli_flag(keyword: str) -> str:
    """The command-line flag of a Python keyword: ``time_limit`` -> ``--time-limit``."""
    return CLI_FLAGS.get(keyword, "--" + keyword.replace("_", "-"))


class OptionError(ParameterError):
    """A keyword argument of a Python function has a bad value. The message names the Python
    keyword (``bins must be >= 2``); :meth:`for_cli` gives the same message naming the
    command-line flag (``--bins must be >= 2``), which is what the CLI prints.

    ``message`` builds the text from a function that names a keyword, so a message can name
    several (``lambda k: f"give {k('time_limit')} or {k('iterations')}"``).
    """

    def __init__(self, message: Callable[[Callable[[str], str]], str], flags: dict | None = None):
        super().__init__(message(str))
        self._message, self._flags = message, dict(flags or {})

    def for_cli(self) -> ParameterError:
        """The message naming flags (``flags``: this command's own, e.g. {"out": "-o"})."""
        return ParameterError(self._message(lambda k: self._flags.get(k) or cli_flag(k)))


def check_number(keyword: str, value, *, low=None, high=None, integer=False) -> None:
    """Raise :class:`OptionError` naming ``keyword`` unless ``value`` is a finite number (a
    whole one with ``integer``) in [low, high]."""
    if integer and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
        raise OptionError(lambda k: f"{k(keyword)} must be a whole number, got {value!r}")
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not number or not math.isfinite(value):
        raise OptionError(lambda k: f"{k(keyword)} must be a finite number, got {value!r}")
    if low is not None and value < low:
        raise OptionError(lambda k: f"{k(keyword)} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise OptionError(lambda k: f"{k(keyword)} must be <= {high}, got {value}")
