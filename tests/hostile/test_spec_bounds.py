"""Hostile specs (issue 10, "spec bounds"): each is answered as spec problems naming the
field and the fix, through the Python API and the CLI (exit 2, never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline_core.export import export_code
from pipeline_core.spec import MAX_SPEC_BYTES, SpecError, load_spec
from tests import REPO


def _nested(depth: int) -> str:
    return '{"name": "deep", "source": ' + "[" * depth + "]" * depth + "}"


CASES = [
    # (id, spec text or dict, start of the message of its first problem)
    ("seed beyond int64", {"source": {"type": "synthetic", "seed": 2**70}},
     "source.seed: must fit in a signed 64-bit integer"),
    ("negative source seed", {"source": {"type": "synthetic", "seed": -1}},
     "source.seed: must be >= 0"),
    ("shuffle buffer 1e12", {"steps": [{"op": "shuffle", "buffer_size": 10**12}]},
     "steps[0].buffer_size: must be <= 10000000"),
    ("prefetch buffer 1e12", {"steps": [{"op": "prefetch", "buffer_size": 10**12}]},
     "steps[0].buffer_size: must be an integer from 0 to 10,000,000"),
    ("batch beyond int64", {"steps": [{"op": "batch", "batch_size": 2**64}]},
     "steps[0].batch_size: must fit in a signed 64-bit integer"),
    ("shape dim 1e12", {"source": {"type": "synthetic", "shape": [10**12]}},
     "source.shape[0]: must be <= 1000000"),
    ("100k nested lists", _nested(100_000), "nested deeper than 32 levels"),
    ("40 nested lists", _nested(40), "source[0]"),
    ("binary bytes", b'{"name": "\xff\xfe\x00"}' + bytes(range(256)), "not a JSON text file"),
    ("oversize text", '{"name": "' + "x" * (MAX_SPEC_BYTES + 10) + '"}',
     f"the spec is {MAX_SPEC_BYTES + 22:,} bytes"),
    ("NUL in the name", {"name": "a\x00b"}, "name: "),
    ("newline in the name", {"name": "a\nimport os"}, "name: "),
    ("1,000 steps", {"steps": [{"op": "repeat", "count": 1}] * 1000},
     "steps: "),
]  # fmt: skip


@pytest.mark.parametrize("spec, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_hostile_spec_is_answered_as_spec_problems(spec, message):
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    first = str(info.value.problems[0])
    assert first.startswith(message) or message in first, first
    assert len(str(info.value)) < 2_000  # echoed values are cut short


def test_a_huge_name_is_not_echoed_whole():
    with pytest.raises(SpecError) as info:
        load_spec({"name": "n" * 100_000})
    assert len(str(info.value)) < 500
    assert "100,002 characters" in str(info.value)


def test_a_name_with_quotes_and_backslashes_still_exports_parseable_code():
    spec = load_spec({"name": "a \"quoted\" \\ name 'here'"})
    compile(export_code(spec), "<export>", "exec")


@pytest.mark.parametrize("case", ["seed beyond int64", "100k nested lists", "binary bytes"])
def test_the_cli_answers_with_exit_2_and_no_traceback(tmp_path, case):
    spec = dict((c[0], c[1]) for c in CASES)[case]
    path = tmp_path / "spec.json"
    if isinstance(spec, bytes):
        path.write_bytes(spec)
    else:
        path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_core", "validate", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "error: invalid pipeline spec" in done.stderr
