"""``edge-ls`` command line: one module per verb, each with ``register(subparsers)``.

Errors meant for the user (:class:`edge_ls.errors.EdgeLSError`) print one line and exit with their
code; anything else is a bug and exits with 1. ``--debug`` shows the traceback. Verb modules import
heavy packages lazily, so ``edge-ls --help`` stays fast and the runtime never pulls in torch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from edge_ls import __version__
from edge_ls.errors import EdgeLSError

#: verb -> module under edge_ls.cli; a missing module (work in progress) simply is not offered.
VERBS = {
    "detect": "detect",
    "models": "models",
    "profiles": "profiles",
    "train": "train",
    "evaluate": "evaluate",
    "export": "export",
    "build-engine": "build_engine",
    "bench": "bench",
}

EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-ls",
        description="Landslide segmentation from GeoTIFF to GIS-ready outputs, on tiered models.",
    )
    parser.add_argument("--version", action="version", version=f"edge-ls {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for module_name in VERBS.values():
        try:
            module = importlib.import_module(f"edge_ls.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"edge_ls.cli.{module_name}":
                continue
            raise
        module.register(sub)
    # Global options are accepted after the verb too (``edge-ls detect ... --debug``): each verb gets a
    # copy whose default is SUPPRESS, so it sets the flag when given and never resets the global one.
    for verb in sub.choices.values():
        verb.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


#: Loggers of libraries whose messages name their own files and internals (GDAL's warnings arrive
#: through rasterio's loggers; Python warnings through ``py.warnings``): shown only with ``--debug``.
LIBRARY_LOGGERS = ("py.warnings", "rasterio", "fiona", "pyogrio", "onnxruntime")


def route_library_warnings(debug: bool) -> None:
    """Send Python warnings (rasterio's NotGeoreferencedWarning, numpy's RuntimeWarnings) and GDAL's
    messages into logging, silent unless ``--debug``: printed raw they leaked source paths and
    library file names to stderr beside edge-ls's own one-line warnings."""
    logging.captureWarnings(True)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="edge-ls: %(levelname)s: %(message)s",
    )
    route_library_warnings(args.debug)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgeLSError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"edge-ls: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edge-ls: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (``edge-ls models | head``): not an error of ours
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug: say so in one line unless --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(
                f"edge-ls: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
                file=sys.stderr,
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
