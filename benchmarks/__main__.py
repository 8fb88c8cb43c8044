"""Run every `benchmarks/bench_*.py` module's `run() -> list[dict]` and print one table each.

    python -m benchmarks            # all benchmarks
    python -m benchmarks profile    # only modules whose name contains "profile"

Each row is a dict; the columns are the union of the rows' keys in order. A
module that raises is reported and the others still run (exit code 1).
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def discover(filters: list[str]) -> list[str]:
    """Module names of the benchmarks, sorted, kept when any filter is in the name."""
    here = Path(__file__).resolve().parent
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    if filters:
        names = [n for n in names if any(f in n for f in filters)]
    return [f"{__package__ or 'benchmarks'}.{n}" for n in names]


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of `rows`."""
    if not rows:
        return "(no rows)"
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    modules = discover(argv)
    if not modules:
        print(f"no benchmark matches {argv}; available: {', '.join(discover([]))}")
        return 2
    failed = 0
    for name in modules:
        print(f"\n== {name} ==", flush=True)
        start = time.monotonic()
        try:
            rows = importlib.import_module(name).run()
        except Exception:  # report and go on with the other benchmarks
            traceback.print_exc()
            failed += 1
            continue
        print(format_table(rows))
        print(f"({time.monotonic() - start:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
