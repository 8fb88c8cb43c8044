"""CLI commands `validate`, `export` and `demo-data`: spec files, their code, the demo data.

python -m pipeline_core validate SPEC.json
python -m pipeline_core export SPEC.json [-o FILE]
python -m pipeline_core demo-data DIRECTORY [--per-class N] [--size PX]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline_core.cli._io import write_output


def _validate(args: argparse.Namespace) -> int:
    from pipeline_core.spec import load_spec

    spec = load_spec(Path(args.spec))
    print(
        f"{args.spec}: valid ({spec.source.type} source, {len(spec.steps)} steps: "
        f"{', '.join(s.op for s in spec.steps) or 'none'})"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from pipeline_core.export import export_code
    from pipeline_core.spec import load_spec

    write_output(export_code(load_spec(Path(args.spec))), args.output)
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from pipeline_core.demo_data import write_demo_data

    root = write_demo_data(args.directory, per_class=args.per_class, size=args.size)
    print(f"wrote demo data to {root} (images/, tfrecord/, csv/, npz/, npy/)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `validate`, `export` and `demo-data` commands."""
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
