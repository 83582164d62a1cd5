"""Exports of a finished mix for people who continue elsewhere: processed stems, DAW sessions.

``stems`` writes each stem as it sounds in the mix (float WAV, summing to the master);
``dawproject`` and ``reaper`` write sessions that rebuild the mix from the original stems, with a
second set of tracks holding the processed stems. :func:`export_alternative` runs them for one
exported alternative (``evomix.output.result.MixResult.write`` calls it).
"""
from __future__ import annotations

from evomix.output.export.alternative import export_alternative
from evomix.output.export.model import DAW_FORMATS, parse_daw

__all__ = ["DAW_FORMATS", "export_alternative", "parse_daw"]
