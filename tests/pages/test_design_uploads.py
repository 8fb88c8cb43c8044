"""AppTest of the Design page's "Stored uploads": sizes, quota use, delete buttons."""

from __future__ import annotations

import pytest

from tests import REPO

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from pipeline_core.paths import uploads_dir  # noqa: E402
from pipeline_core.uploads import ENV_QUOTA, store_upload  # noqa: E402
from tests.pages.helpers import png_bytes, zip_bytes  # noqa: E402

TIMEOUT = 90  # TensorFlow's first import alone exceeds AppTest's 3 s default


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _stored_expander(at: AppTest):
    found = [e for e in at.expander if e.label.startswith("Stored uploads")]
    assert len(found) == 1, [e.label for e in at.expander]
    return found[0]


def _rows(at: AppTest) -> str:
    return "\n".join(m.value for m in _stored_expander(at).markdown)


def test_stored_uploads_list_sizes_quota_and_delete(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_LAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(ENV_QUOTA, "1")
    table = store_upload("table.csv", b"f1,label\n1,0\n2,1\n")
    at = AppTest.from_file(str(REPO / "pages" / "design.py"), default_timeout=TIMEOUT).run()
    _ok(at)
    expander = _stored_expander(at)
    assert expander.label == "Stored uploads (17 bytes of 1.0 MB)"
    assert f"`{table.path.name}`" in _rows(at)
    assert "csv · 17 bytes" in "\n".join(c.value for c in expander.caption)

    revision = at.session_state["lab.revision"]
    folder = zip_bytes({"shapes/a/1.png": png_bytes(), "shapes/b/2.png": png_bytes()})
    at.file_uploader(key=f"design.r{revision}.upload.data").set_value(
        ("shapes.zip", folder, "application/zip")
    )
    at.run()
    _ok(at)
    source = at.session_state["lab.spec"].source
    assert source.type == "image_folder"
    shapes = source.path.removeprefix("{data_dir}/uploads/").split("/")[0]
    assert f"`{shapes}` (this design reads it)" in _rows(at)
    assert f"`{table.path.name}`\n" in _rows(at) + "\n"  # not read by the design

    at.button(key=f"design.uploads.delete.{table.path.name}").click().run()
    _ok(at)
    assert not table.path.exists()
    assert [s.value for s in at.success] == [f"Deleted {table.path.name} (17 bytes freed)."]
    assert table.path.name not in _rows(at)

    at.button(key=f"design.uploads.delete.{shapes}").click().run()
    _ok(at)
    assert not (uploads_dir() / shapes).exists()
    warning = at.warning[0].value
    assert warning.startswith(f"Deleted {shapes} (")
    assert "This design still reads it" in warning
    assert _stored_expander(at).label == "Stored uploads (0 bytes of 1.0 MB)"
    assert "No uploads stored yet." in [c.value for c in _stored_expander(at).caption]
