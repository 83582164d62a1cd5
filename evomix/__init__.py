"""evomix: mix and master multitrack stems by multi-objective genetic search.

Public API: :func:`mix`, :func:`render`, :func:`analyze` (see ``evomix.api``).
"""
__version__ = "0.1.0"

from evomix.errors import AudioFileError, EvomixError, ParameterError  # noqa: E402

__all__ = ["mix", "render", "analyze", "MixResult", "EvomixError", "ParameterError", "AudioFileError", "__version__"]


def __getattr__(name):
    # The API is imported on first use, not here: `objectives` imports the leaf layer `evomix.core`
    # (and `evomix.errors`), which runs this file first. Importing `evomix.api` here would make
    # `import objectives` load the whole engine and re-enter `objectives` half-initialised
    # (`evomix.api` imports `objectives`). No cycle is left between the packages; this keeps
    # `import evomix.errors` and `import evomix.core.meter` light.
    if name in ("mix", "render", "analyze", "MixResult"):
        from evomix import api

        return getattr(api, name)
    raise AttributeError(f"module 'evomix' has no attribute {name!r}")
