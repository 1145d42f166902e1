"""Errors the user can act on, each with its own exit code.

The CLI prints ``str(error)`` as one line and exits with ``error.exit_code``; a traceback is shown only
with ``--debug``. Anything that is not an ``EdgeLSError`` is a bug and exits with 1.
"""

from __future__ import annotations


class EdgeLSError(Exception):
    """Base of every error meant for the user."""

    exit_code = 1


class InputError(EdgeLSError):
    """The input raster or dataset cannot be used (missing, corrupt, wrong bands, all nodata...)."""

    exit_code = 2


class ConfigError(EdgeLSError):
    """A profile, training config or CLI option is invalid."""

    exit_code = 2


class ModelError(EdgeLSError):
    """The model artifact is missing, corrupt, or its metadata is missing or invalid."""

    exit_code = 3


class OutputError(EdgeLSError):
    """The outputs cannot be written (unwritable folder, disk full...)."""

    exit_code = 4


class MissingExtraError(EdgeLSError):
    """An optional dependency (extra) is needed for this command but not installed."""

    exit_code = 5

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs '{package}', which is not installed: pip install 'edge-ls[{extra}]'"
        )
        self.package = package
        self.extra = extra


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (200 characters at most), else its type's name.

    Third-party libraries (ONNX Runtime, GDAL) raise multi-line texts; an error line keeps the first.
    """
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
