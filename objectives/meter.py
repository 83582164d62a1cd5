"""Moved to :mod:`evomix.core.meter`; this name stays for callers outside the package (no module of
evomix or objectives imports it, ``tests/test_imports.py`` checks that)."""
from evomix.core.meter import *  # noqa: F401,F403
