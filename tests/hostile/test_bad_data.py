"""Broken data files (issue 10, case 8): a run that cannot read its data names the file,
and for CSV the line, with what is wrong there."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipeline_core.preview import preview_job
from pipeline_core.profile import RunSettings, profile
from pipeline_core.sources import locate_bad_input
from pipeline_core.spec import load_spec


def _images(root, bad: bytes | None):
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            pixels = (np.random.default_rng(i).random((8, 8, 3)) * 255).astype("uint8")
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    if bad is not None:
        (root / "dog" / "broken.png").write_bytes(bad)
    return {"type": "image_folder", "path": str(root), "image_size": [8, 8]}


def _csv(root, text: str):
    path = root / "data.csv"
    path.write_text(text)
    return {"type": "csv", "path": str(path), "label_column": "label"}


ROWS = "".join(f"{i},{i + 1},{i % 2}\n" for i in range(60))
CASES = [
    # (id, source maker, words of the reason)
    ("truncated png", lambda p: _images(p, b"\x89PNG\r\n\x1a\n" + b"\0" * 20), "broken.png does not decode"),
    ("text as png", lambda p: _images(p, b"hello"), "broken.png does not decode"),
    ("short row", lambda p: _csv(p, "a,b,label\n1,2,0\n5,6\n"), "data.csv, line 3: 2 fields where the header has 3"),
    ("long row", lambda p: _csv(p, "a,b,label\n1,2,0\n5,6,1,9\n"), "data.csv, line 3: 4 fields"),
    ("text late", lambda p: _csv(p, "a,b,label\n" + ROWS + "7,oops,1\n"), "data.csv, line 62: 'oops' is not a number"),
    ("text early", lambda p: _csv(p, "a,b,label\n1,x,0\n"), "data.csv, line 2: 'x' is not a number"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_run_that_cannot_read_its_data_names_the_file_and_line(tmp_path, make, words):
    spec = {
        "name": "bad data",
        "source": make(tmp_path),
        "steps": [{"op": "batch", "batch_size": 2}],
    }
    result = profile(spec, settings=RunSettings(max_batches=50))
    assert result.status == "failed"
    assert words in result.reason, result.reason


def test_good_files_name_nothing(tmp_path):
    spec = load_spec({"name": "ok", "source": _images(tmp_path, None), "steps": []})
    assert locate_bad_input(spec.source) is None


def test_the_preview_names_the_image_it_could_not_read(tmp_path):
    spec = {"name": "bad", "source": _images(tmp_path, b"hello"), "steps": []}
    preview = preview_job(json.dumps(spec), 8, 0)
    assert "broken.png does not decode as an image" in preview.samples_error
