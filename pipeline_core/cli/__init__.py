"""`python -m pipeline_core ...`: the command line.

Every command is added by the `register(subparsers)` of a module listed in
`COMMANDS`; a new command goes into one of them (or a new module listed there).
Shared output and argument helpers live in `pipeline_core.cli._io`.

Exit codes: 0 done; 2 bad input — a `PipelineLabError` (a bad spec, a missing
file, an unknown run id) or a path that cannot be read or written — with its
message on stderr, never a traceback; 1 a bug (any other exception, a
`ValueError` from a library included), with its traceback on stderr; `profile`
also exits 1 for a run that starts but fails; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from pipeline_core.cli import analyze, runs, serve, spec
from pipeline_core.errors import PipelineLabError

COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    spec.register,  # validate, export, demo-data
    runs.register,  # profile, runs
    analyze.register,  # analyze, tune
    serve.register,  # serve dispatcher, serve worker
)
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def make_parser() -> argparse.ArgumentParser:
    """The argument parser with every command of `COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_core",
        description="Pipeline Lab: design, export and profile tf.data input pipelines.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (see the module docstring)."""
    args = make_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except PipelineLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: {exc}; check the path and its permissions", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # a bug: reported with its traceback, not as bad input
        traceback.print_exc()
        print(
            "error: this is a bug in Pipeline Lab, not a problem with your input; "
            "please report it with the traceback above",
            file=sys.stderr,
        )
        return EXIT_BUG
