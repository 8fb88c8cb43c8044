"""`python -m pipeline_core ...`: validate and export specs, write demo data.

Other modules add commands without editing this file: every module named in
`COMMAND_MODULES` that exists is imported and its `register(subparsers)` called
(e.g. `profile`/`runs` and `analyze`/`tune`). A `ValueError` from any command
(a bad spec, a missing file) ends with its message on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

COMMAND_MODULES: tuple[str, ...] = ("pipeline_core.cli_runs", "pipeline_core.cli_analyze")
EXIT_USAGE = 2


def _validate(args: argparse.Namespace) -> int:
    from pipeline_core.spec import load_spec  # noqa: PLC0415

    spec = load_spec(Path(args.spec))
    print(
        f"{args.spec}: valid ({spec.source.type} source, {len(spec.steps)} steps: "
        f"{', '.join(s.op for s in spec.steps) or 'none'})"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from pipeline_core.export import export_code  # noqa: PLC0415
    from pipeline_core.spec import load_spec  # noqa: PLC0415

    code = export_code(load_spec(Path(args.spec)))
    if args.output is None:
        sys.stdout.write(code)
        return 0
    out = Path(args.output)
    try:
        out.write_text(code, encoding="utf-8")
    except OSError as exc:
        raise ValueError(
            f"cannot write {str(out)!r}: {exc.strerror}; pick a writable path"
        ) from None
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from pipeline_core.demo_data import write_demo_data  # noqa: PLC0415

    root = write_demo_data(args.directory, per_class=args.per_class, size=args.size)
    print(f"wrote demo data to {root} (images/, tfrecord/, csv/, npz/, npy/)")
    return 0


def _add_core_commands(subparsers: argparse._SubParsersAction) -> None:
    validate = subparsers.add_parser("validate", help="check a spec file and list its problems")
    validate.add_argument("spec", help="path of a pipeline spec JSON file")
    validate.set_defaults(handler=_validate)

    export = subparsers.add_parser("export", help="write standalone tf.data code for a spec")
    export.add_argument("spec", help="path of a pipeline spec JSON file")
    export.add_argument("-o", "--output", help="write the script here (default: stdout)")
    export.set_defaults(handler=_export)

    demo = subparsers.add_parser("demo-data", help="write a small labelled demo data set")
    demo.add_argument("directory", help="target folder (created)")
    demo.add_argument("--per-class", type=int, default=40, help="images per class (default 40)")
    demo.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    demo.set_defaults(handler=_demo_data)


def make_parser() -> argparse.ArgumentParser:
    """The argument parser with the core commands and those of `COMMAND_MODULES`."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_core",
        description="Pipeline Lab: design, export and profile tf.data input pipelines.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_core_commands(subparsers)
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (2 for bad input, with the message on stderr)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: {exc}; check the path and its permissions", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
