"""Paths in a browser session: confined to the data dir and the admin's roots (issue 10, case 3).

The Streamlit app turns confinement on (`paths.confine_to_data_roots`, an environment
variable that every child process inherits). Each case is a spec a browser user could
upload that points outside the data dir: straight (`/`, `/etc/passwd`), through `..`,
through a symlink inside the data dir, through a glob, through `~` or a `$VAR`, or as a
cache file to write. Each is refused with a message that names the path as given and
the fix, before anything outside the data dir is opened, listed or created. Paths in the
data dir, in `$PIPELINE_LAB_DATA_ROOTS` and the demo data keep working, and the command
line (confinement off) keeps full access.
"""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline_core import paths
from pipeline_core.build import BuildError, build, element_specs
from pipeline_core.export import export_code
from pipeline_core.spec import load_spec
from tests import REPO

FIX = (
    "Put the files under the data dir (e.g. {data_dir}/my-data/...) or upload them on the "
    "Design page, or ask the admin to add the folder to PIPELINE_LAB_DATA_ROOTS; the command "
    "line (python -m pipeline_core) has full access."
)
SECRET = "SECRET_VALUE_5f3a"  # in outside files and in a $VAR: never in a message
CSV = {"type": "csv", "label_column": "label"}


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A confined session: data dir `home`, and beside it an `outside` folder with files
    (a CSV, a TFRecord, an image folder) that symlinks in the data dir point at."""
    home, outside = tmp_path / "home", tmp_path / "outside"
    (outside / "images" / "cat").mkdir(parents=True)
    (outside / "secret.csv").write_text(f"{SECRET},label\n1,0\n", encoding="utf-8")
    (outside / "data.tfrecord").write_bytes(b"\0" * 64)
    _png(outside / "images" / "cat" / "x.png")
    # inside the data dir: a good image folder with one linked image, a folder whose
    # class folder is a link, a link to the outside image folder, a linked TFRecord
    for folder in ("imgs/cat", "imgs2", "shards", "mydata"):
        (home / folder).mkdir(parents=True)
    _png(home / "imgs" / "cat" / "ok.png")
    (home / "imgs" / "cat" / "evil.png").symlink_to(outside / "images" / "cat" / "x.png")
    (home / "imgs2" / "cat").symlink_to(outside / "images" / "cat")
    (home / "linked").symlink_to(outside / "images")
    (home / "outlink").symlink_to(outside)
    (home / "shards" / "a.tfrecord").symlink_to(outside / "data.tfrecord")
    (home / "mydata" / "rows.csv").write_text("a,label\n1,0\n2,1\n", encoding="utf-8")
    monkeypatch.setenv("PIPELINE_LAB_HOME", str(home))
    monkeypatch.setenv("PIPELINE_LAB_SECRET_DIR", SECRET)
    monkeypatch.delenv(paths.ENV_DATA_ROOTS, raising=False)
    monkeypatch.setenv(paths.ENV_CONFINE, "1")
    assert paths.confined()
    return home, outside


def _png(path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def opened(monkeypatch):
    """Every path opened or listed from Python while the test runs."""
    seen: list[str] = []
    for module, name in ((builtins, "open"), (io, "open"), (os, "scandir"), (os, "listdir")):
        real = getattr(module, name)

        def spy(path=".", *args, _real=real, **kwargs):
            if isinstance(path, str | os.PathLike):
                seen.append(os.path.realpath(path))
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    return seen


def _cache(filename: str) -> list[dict]:
    return [{"op": "cache", "filename": filename}]


def _outside(path: str, home: Path, outside: Path) -> bool:
    """Whether an opened or listed `path` (real) lies where the test put things outside."""
    if path in ("/", os.path.realpath(home.parent), os.path.realpath(home.parent.parent)):
        return True
    return any(
        path == f or path.startswith(f + "/") for f in (os.path.realpath(outside), "/etc", "/tmp/x")
    )


# (case, source (None: synthetic), steps, the path as the message must name it)
REFUSED: list[tuple[str, dict | None, list[dict], str]] = [
    ("image-folder-root", {"type": "image_folder", "path": "/"}, [], "/"),
    ("image-folder-dotdot", {"type": "image_folder", "path": "../.."}, [], "../.."),
    ("image-folder-symlink", {"type": "image_folder", "path": "{data_dir}/linked"}, [],
     "{data_dir}/linked"),
    ("image-file-symlink", {"type": "image_folder", "path": "{data_dir}/imgs"}, [],
     "{data_dir}/imgs"),
    ("image-class-symlink", {"type": "image_folder", "path": "imgs2"}, [], "imgs2"),
    ("csv-etc-passwd", {**CSV, "path": "/etc/passwd"}, [], "/etc/passwd"),
    ("csv-outside", {**CSV, "path": "{outside}/secret.csv"}, [], "{outside}/secret.csv"),
    ("csv-glob-dotdot", {**CSV, "path": "{data_dir}/*/../../outside/*.csv"}, [],
     "{data_dir}/*/../../outside/*.csv"),
    ("csv-symlinked-dir", {**CSV, "path": "outlink/secret.csv"}, [], "outlink/secret.csv"),
    ("tfrecord-root-glob", {"type": "tfrecord", "files": "/**"}, [], "/**"),
    ("tfrecord-etc-glob", {"type": "tfrecord", "files": "/etc/*"}, [], "/etc/*"),
    ("tfrecord-symlink", {"type": "tfrecord", "files": "{data_dir}/shards/*"}, [],
     "{data_dir}/shards/*"),
    ("npz-home-var", {"type": "npz", "path": "$HOME/x"}, [], "$HOME/x"),
    ("npz-tilde", {"type": "npz", "path": "~/x"}, [], "~/x"),
    ("csv-secret-var", {**CSV, "path": "${PIPELINE_LAB_SECRET_DIR}/x.csv"}, [],
     "${PIPELINE_LAB_SECRET_DIR}/x.csv"),
    ("npy-unset-var", {"type": "npy", "features_path": "$NO_SUCH_VAR_1/x"}, [],
     "$NO_SUCH_VAR_1/x"),
    ("cache-tmp", None, _cache("/tmp/x"), "/tmp/x"),
    ("cache-dotdot", None, _cache("../../x"), "../../x"),
    ("cache-data-dir-up", None, _cache("{data_dir}/../x"), "{data_dir}/../x"),
    ("cache-outside-new", None, _cache("{outside}/new/dir/x"), "{outside}/new/dir/x"),
    ("cache-via-symlink", None, _cache("outlink/new/x"), "outlink/new/x"),
]  # fmt: skip


def _filled(value, outside: Path):
    """`value` with "{outside}" in its strings replaced by the outside folder."""
    if isinstance(value, str):
        return value.replace("{outside}", str(outside))
    if isinstance(value, dict):
        return {k: _filled(v, outside) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, outside) for v in value]
    return value


@pytest.mark.parametrize("case, source, steps, given", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_the_fix_before_anything_outside_is_touched(
    case, source, steps, given, lab, opened
):
    home, outside = lab
    source = source or {"type": "synthetic", "num_examples": 4}
    spec = _filled({"source": source, "steps": steps}, outside)
    before = _tree(outside), _tree(home.parent)
    opened.clear()
    with pytest.raises(BuildError) as caught:
        element_specs(spec)
    touched = list(opened)
    text = str(caught.value)
    assert isinstance(caught.value.__cause__, paths.OutsideDataError), text
    assert repr(_filled(given, outside)) in text, text
    assert "outside the data dir" in text and text.endswith(FIX), text
    for leak in (SECRET, os.path.expanduser("~") + "/", str(outside / "images"), "root:"):
        assert leak not in text, text
    # nothing outside the data dir was opened, listed or created
    assert not [p for p in touched if _outside(p, home, outside)], touched
    assert (_tree(outside), _tree(home.parent)) == before
    assert not Path("/tmp/x.index").exists()


def test_export_and_build_are_confined_too(lab):
    home, outside = lab
    spec = {"source": {**CSV, "path": str(outside / "secret.csv")}}
    for entry in (build, export_code):
        with pytest.raises(Exception, match="outside the data dir") as caught:
            entry(spec)
        assert SECRET not in str(caught.value)


def test_loading_a_spec_creates_nothing(lab):
    home, outside = lab
    before = _tree(home.parent)
    for filename in ("{data_dir}/deep/new/x", str(outside / "new" / "x"), "../../x"):
        load_spec(
            {"source": {"type": "synthetic"}, "steps": [{"op": "cache", "filename": filename}]}
        )
    assert _tree(home.parent) == before


# --- what keeps working -----------------------------------------------------------------


def test_a_root_in_PIPELINE_LAB_DATA_ROOTS_is_accepted(lab, monkeypatch):
    home, outside = lab
    monkeypatch.setenv(paths.ENV_DATA_ROOTS, os.pathsep.join(["relative/ignored", str(outside)]))
    stages = element_specs({"source": {**CSV, "path": str(outside / "secret.csv")}})
    assert stages[0].features == "float32 (1,)"
    # the symlinks into that root are fine now as well
    assert element_specs({"source": {"type": "image_folder", "path": "imgs"}})[0].cardinality == 2
    # but not what lies beside it
    with pytest.raises(BuildError, match="outside the data dir"):
        element_specs({"source": {**CSV, "path": str(outside.parent / "x.csv")}})


def test_demo_data_and_relative_paths_work(lab):
    home, _ = lab
    demo = element_specs({"source": {**CSV, "path": "{data_dir}/demo/csv/*.csv"}})
    assert demo[0].label == "int64 ()"
    relative = element_specs({"source": {**CSV, "path": "mydata/rows.csv"}})
    assert relative[0].cardinality in (None, 2) and relative[0].features == "float32 (1,)"
    assert [s.cardinality for s in element_specs({"source": {"type": "image_folder",
            "path": "{data_dir}/demo/images"}})] == [200]  # fmt: skip


def test_a_cache_file_in_the_data_dir_is_built_and_written_there(lab):
    home, _ = lab
    spec = {
        "source": {"type": "synthetic", "num_examples": 4, "shape": [2]},
        "steps": [{"op": "cache", "filename": "{data_dir}/cache/x"}],
    }
    assert len(list(build(spec))) == 4
    assert (home / "cache").is_dir() and any((home / "cache").glob("x*"))


def test_without_confinement_the_command_line_keeps_full_access(lab, monkeypatch):
    home, outside = lab
    monkeypatch.delenv(paths.ENV_CONFINE)
    assert not paths.confined()
    assert element_specs({"source": {**CSV, "path": str(outside / "secret.csv")}})
    monkeypatch.setenv("OUTSIDE_DIR", str(outside))
    folder = element_specs({"source": {"type": "image_folder", "path": "$OUTSIDE_DIR/images"}})
    assert folder[0].cardinality == 1
    # symlinks leading out are followed, as before
    assert element_specs({"source": {"type": "image_folder", "path": "{data_dir}/imgs"}})
    assert paths.resolve_path("~/x") == Path.home() / "x"
    assert paths.glob_files(str(outside / "*.csv"))[1] == [str(outside / "secret.csv")]


def test_a_child_process_is_confined_too(lab):
    """The variable travels to children (multiprocessing "spawn" copies os.environ)."""
    from pipeline_core.isolate import run_job
    from pipeline_core.preview import preview_job

    _, outside = lab
    spec = load_spec({"source": {**CSV, "path": str(outside / "secret.csv")}})
    preview = run_job(preview_job, args=(spec.to_json(), 1, 0, None), timeout_s=120)
    assert "outside the data dir" in (preview.summary_error or "")
    assert SECRET not in preview.summary_error


# --- app.py turns it on; the test process is restored afterwards -------------------------

_APP_RAN: list[bool] = []


def test_app_py_confines_the_server():
    from streamlit.testing.v1 import AppTest

    assert not paths.confined()
    AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert paths.confined()  # tests/conftest.py restores it after this test
    _APP_RAN.append(True)


def test_the_confinement_of_app_py_does_not_leak_into_later_tests():
    if not _APP_RAN:
        pytest.skip("runs after test_app_py_confines_the_server")
    assert os.environ.get(paths.ENV_CONFINE) is None and not paths.confined()
