"""evomix: mix and master multitrack stems by multi-objective genetic search.

Public API: :func:`mix`, :func:`render`, :func:`analyze` (see ``evomix.api``).
"""
__version__ = "0.1.0"

from evomix.errors import AudioFileError, EvomixError, ParameterError  # noqa: E402

__all__ = ["mix", "render", "analyze", "MixResult", "EvomixError", "ParameterError", "AudioFileError", "__version__"]


def __getattr__(name):
    # The API is imported on first use, so that `objectives` (which uses evomix.errors) and
    # `evomix.api` (which uses objectives) can import each other's pieces in any order.
    if name in ("mix", "render", "analyze", "MixResult"):
        from evomix import api

        return getattr(api, name)
    raise AttributeError(f"module 'evomix' has no attribute {name!r}")
