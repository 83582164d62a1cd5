"""evomix: mix and master multitrack stems by multi-objective genetic search.

Public API: :func:`mix`, :func:`render`, :func:`analyze` (see ``evomix.api``).
"""
__version__ = "0.1.0"

from evomix.api import MixResult, analyze, mix, render  # noqa: E402
from evomix.errors import AudioFileError, EvomixError, ParameterError  # noqa: E402

__all__ = ["mix", "render", "analyze", "MixResult", "EvomixError", "ParameterError", "AudioFileError", "__version__"]
