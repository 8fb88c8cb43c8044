"""What every command shares: writing its output, and argument types for counts and times."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline_core.errors import PipelineLabError


def write_file(path: str, text: str) -> None:
    """Write `text` to the file `path`.

    Raises:
        PipelineLabError: the file cannot be written (the message names it and the fix).
    """
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PipelineLabError(
            f"cannot write {path!r}: {exc.strerror}; pick a writable path"
        ) from None


def write_output(text: str, path: str | None) -> None:
    """`text` to stdout (ending with a newline), or to the file `path` with "wrote PATH" on stderr."""
    if path is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    write_file(path, text)
    print(f"wrote {path}", file=sys.stderr)


def write_json(data: dict[str, Any], path: str) -> None:
    """`data` as indented JSON to the file `path` (values JSON lacks as text), "wrote PATH" on stderr."""
    write_output(json.dumps(data, indent=2, default=str), path)


def positive_int(text: str) -> int:
    """An argument type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, received {text}")
    return value


def positive_float(text: str) -> float:
    """An argument type: a number > 0."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, received {text}")
    return value
