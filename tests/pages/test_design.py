"""AppTest of the Design and Preview pages: load, edit the source and steps, uploads."""

from __future__ import annotations

import json
import logging
import re

import pytest

from tests import REPO

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.pages.helpers import (  # noqa: E402
    png_bytes,
    settle,  # noqa: E402
    zip_bytes,
)

TIMEOUT = 90  # TensorFlow's first import alone exceeds AppTest's 3 s default


def _page(name: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / f"{name}.py"), default_timeout=TIMEOUT)
    return settle(at.run())  # the element specs are made in a child process


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _spec(at: AppTest):
    return at.session_state["lab.spec"]


def _key(at: AppTest, suffix: str) -> str:
    return f"design.r{at.session_state['lab.revision']}.{suffix}"


def _texts(at: AppTest) -> str:
    parts = [e.value for e in at.error] + [m.value for m in at.markdown]
    return "\n".join(str(p) for p in parts)


@pytest.fixture(scope="module")
def design() -> AppTest:
    at = _page("design")
    _ok(at)
    return at


def test_default_design_shows_element_specs_code_and_json(design):
    assert not design.error
    assert design.dataframe, "the element spec table is shown"
    stages = design.dataframe[0].value
    assert list(stages["after"])[0].startswith("source")
    assert len(stages) == len(_spec(design).steps) + 1
    languages = {c.language for c in design.code}
    assert {"python", "json"} <= languages
    code = next(c.value for c in design.code if c.language == "python")
    assert "tf.data" in code and "batch(" in code


def test_change_source_type_and_field(design):
    design.selectbox(key=_key(design, "source.type")).set_value("generator").run()
    _ok(design)
    assert _spec(design).source.type == "generator"
    design.number_input(key=_key(design, "source.generator.num_examples")).set_value(64).run()
    _ok(design)
    assert _spec(design).source.num_examples == 64
    design.selectbox(key=_key(design, "source.type")).set_value("synthetic").run()
    _ok(design)
    assert _spec(design).source.type == "synthetic"


def test_add_move_remove_a_step(design):
    before = [s.op for s in _spec(design).steps]
    design.selectbox(key=_key(design, "steps.new_op")).set_value("cache").run()
    design.button(key=_key(design, "steps.add")).click().run()
    _ok(design)
    assert [s.op for s in _spec(design).steps] == [*before, "cache"]
    last = len(before)
    design.button(key=_key(design, f"steps.{last}.up")).click().run()
    _ok(design)
    ops = [s.op for s in _spec(design).steps]
    assert ops[last - 1] == "cache" and ops[last] == before[-1]
    design.button(key=_key(design, f"steps.{last - 1}.remove")).click().run()
    _ok(design)
    assert [s.op for s in _spec(design).steps] == before


def test_edit_augmentation_parameter_and_add_one(design):
    index = next(i for i, s in enumerate(_spec(design).steps) if s.op == "map")
    count = len(_spec(design).steps[index].augmentations)
    design.button(key=_key(design, f"steps.{index}.add_aug")).click().run()
    _ok(design)
    assert len(_spec(design).steps[index].augmentations) == count + 1
    name_key = _key(design, f"steps.{index}.aug{count}.name")
    design.selectbox(key=name_key).set_value("random_rotation").run()
    _ok(design)
    slider = design.slider(
        key=_key(design, f"steps.{index}.aug{count}.random_rotation.max_degrees")
    )
    assert slider.max == 180.0
    slider.set_value(30.0).run()
    _ok(design)
    aug = _spec(design).steps[index].augmentations[count]
    assert (aug.name, aug.max_degrees) == ("random_rotation", 30.0)


def test_invalid_edit_is_explained_not_applied(design):
    index = next(i for i, s in enumerate(_spec(design).steps) if s.op == "batch")
    size_key = _key(design, f"steps.{index}.fields.batch_size")
    design.number_input(key=size_key).set_value(16).run()
    assert _spec(design).steps[index].batch_size == 16
    moved = _spec(design)
    # Moving the map below the batch is fine; an element-only augmentation there is not.
    design.selectbox(key=_key(design, "steps.new_op")).set_value("map").run()
    design.button(key=_key(design, "steps.add")).click().run()
    _ok(design)
    new = len(_spec(design).steps) - 1
    design.selectbox(key=_key(design, f"steps.{new}.aug0.name")).set_value("jpeg_quality").run()
    _ok(design)
    assert f"steps[{new}].augmentations[0]" in _texts(design)
    assert "before the batch step" in _texts(design)
    assert _spec(design).steps[new].augmentations[0].name != "jpeg_quality"
    design.button(key=_key(design, f"steps.{new}.remove")).click().run()
    assert _spec(design) == moved


def test_bad_spec_upload_lists_every_problem_with_its_path(design):
    bad = {
        "source": {"type": "synthetic", "num_examples": 0},
        "steps": [{"op": "batch", "batch_size": 0}, {"op": "bogus"}],
    }
    before = _spec(design)
    design.file_uploader(key=_key(design, "spec_upload")).set_value(
        ("bad.json", json.dumps(bad).encode(), "application/json")
    ).run()
    _ok(design)
    text = _texts(design)
    assert "3 problems" in text
    for path in ("source.num_examples", "steps[0].batch_size", "steps[1].op"):
        assert f"`{path}`" in text
    assert _spec(design) == before
    design.file_uploader(key=_key(design, "spec_upload")).set_value(
        ("broken.json", b"{not json", "application/json")
    ).run()
    assert "not valid JSON" in _texts(design)
    assert "broken.json is not a valid pipeline spec (1 problem):" in _texts(design)


def test_good_spec_upload_replaces_the_spec():
    at = _page("design")
    good = {"name": "uploaded", "source": {"type": "synthetic", "num_examples": 10, "shape": [8, 8, 3]},
            "steps": [{"op": "batch", "batch_size": 5}]}  # fmt: skip
    at.file_uploader(key=_key(at, "spec_upload")).set_value(
        ("good.json", json.dumps(good).encode(), "application/json")
    ).run()
    _ok(at)
    assert _spec(at).name == "uploaded"
    assert at.text_input(key=_key(at, "name")).value == "uploaded"
    assert [s.op for s in _spec(at).steps] == ["batch"]


def test_data_upload_becomes_the_source_and_hostile_zip_is_refused(lab_home):
    at = _page("design")
    hostile = zip_bytes({"cls/a.png": png_bytes(), "../../escape.png": png_bytes()})
    at.file_uploader(key=_key(at, "upload.data")).set_value(("x.zip", hostile, "application/zip"))
    at.run()
    _ok(at)
    assert "path traversal" in _texts(at)
    assert _spec(at).source.type == "synthetic"
    folder = zip_bytes({"shapes/a/1.png": png_bytes(), "shapes/b/2.png": png_bytes()})
    at.file_uploader(key=_key(at, "upload.data")).set_value(
        ("shapes.zip", folder, "application/zip")
    )
    settle(at.run())
    _ok(at)
    source = _spec(at).source
    assert source.type == "image_folder"
    assert source.path.startswith("{data_dir}/uploads/shapes-")
    assert at.dataframe[0].value["features"].iloc[0] == "float32 (64, 64, 3)"  # resized: 0-1


def test_preview_page_shows_sample_pairs_and_batch_figures():
    at = _page("preview")
    _ok(at)
    assert not at.error
    images = at.get("image")
    assert len(images) == at.number_input(key="preview.n").value  # one pair image each
    captions = [c.value for c in at.caption if c.value.startswith("#")]
    assert len(captions) == 8
    classes = ("circle", "cross", "square", "stripes", "triangle")  # the demo images
    assert all(any(f"label {c} →" in t for c in classes) for t in captions), captions
    at.radio(key="preview.samples_from").set_value("the design's synthetic source").run()
    _ok(at)
    captions = [c.value for c in at.caption if c.value.startswith("#")]
    assert all(re.search(r"label \d+ → \d+", t) for t in captions), captions
    assert at.get("plotly_chart"), "label distribution chart"
    rows = dict(zip(at.dataframe[0].value["figure"], at.dataframe[0].value["value"], strict=True))
    assert rows["batch shape"] == "[32, 32, 32, 3]"
    at.number_input(key="preview.n").set_value(3).run()
    at.button(key="preview.reroll").click().run()
    _ok(at)
    assert at.number_input(key="preview.seed").value == 1
    assert len([c for c in at.caption if c.value.startswith("#")]) == 3
    at.radio(key="preview.mode").set_value("One augmentation alone").run()
    at.selectbox(key="preview.only").set_value("random_crop").run()
    at.number_input(key="preview.only.random_crop.height").set_value(16).run()
    _ok(at)
    assert not at.error
    assert all("[16, 24, 3]" in c.value for c in at.caption if c.value.startswith("#"))


def test_preview_batch_that_fails_at_run_time_shows_why_and_the_page_keeps_working():
    """The first batch runs in a child process: a pipeline that fails there is a message."""
    from pipeline_core.spec import load_spec

    bad = load_spec(
        {
            "name": "labels beyond mixup's classes",
            "source": {
                "type": "synthetic",
                "num_examples": 64,
                "shape": [8, 8, 3],
                "num_classes": 10,
            },
            "steps": [
                {"op": "batch", "batch_size": 8},
                {"op": "map", "augmentations": [{"name": "mixup", "num_classes": 2}]},
            ],
        }
    )
    at = AppTest.from_file(str(REPO / "pages" / "preview.py"), default_timeout=TIMEOUT)
    at.session_state["lab.spec"] = bad
    at.run()
    _ok(at)
    assert any("No batch to show" in e.value for e in at.error), [e.value for e in at.error]
    at.number_input(key="preview.n").set_value(2).run()
    _ok(at)


def test_preview_of_a_missing_image_folder_names_the_folder_not_the_source_type(tmp_path):
    """The message is about the missing folder; no hint to 'pick an image source' it already is."""
    from pipeline_core.spec import load_spec

    missing = tmp_path / "no-such-folder"
    spec = load_spec({"source": {"type": "image_folder", "path": str(missing)},
                      "steps": [{"op": "batch", "batch_size": 4}]})  # fmt: skip
    at = AppTest.from_file(str(REPO / "pages" / "preview.py"), default_timeout=TIMEOUT)
    at.session_state["lab.spec"] = spec
    at.run()
    _ok(at)
    errors = [e.value for e in at.error]
    assert any(e.startswith("No preview:") and str(missing) in e for e in errors), errors
    hints = [i.value for i in at.info]
    assert not any("pick an image source" in h for h in hints), hints


def test_preview_samples_are_computed_in_a_child_process(monkeypatch):
    """The page never runs a user's source or augmentations in the server process."""
    import pipeline_core.preview as preview
    from pipeline_core.spec import load_spec

    def in_the_server(*args, **kwargs):
        raise AssertionError("the server process ran a user's pipeline")

    monkeypatch.setattr(preview, "preview_samples", in_the_server)
    monkeypatch.setattr(preview, "batch_summary", in_the_server)
    source = {"type": "synthetic", "num_examples": 8, "shape": [8, 8, 3]}
    spec = load_spec({"name": "computed in a child", "source": source})
    at = AppTest.from_file(str(REPO / "pages" / "preview.py"), default_timeout=TIMEOUT)
    at.session_state["lab.spec"] = spec
    at.run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    # no map step: nothing to augment, each sample once, and the page says so
    assert len(at.get("image")) == at.number_input(key="preview.n").value
    assert any("nothing to augment" in i.value for i in at.info)


def test_a_preview_child_stopped_at_its_memory_ceiling_is_a_message(monkeypatch):
    import pipeline_core.child as child
    from pipeline_core.spec import default_spec

    monkeypatch.setattr(child, "default_memory_limit_mb", lambda: 1)
    at = AppTest.from_file(str(REPO / "pages" / "preview.py"), default_timeout=TIMEOUT)
    at.session_state["lab.spec"] = default_spec().replace(name="not cached: a ceiling of 1 MB")
    at.run()
    _ok(at)
    errors = [e.value for e in at.error]
    assert any(e.startswith("No preview: stopped: memory ceiling 1 MB exceeded") for e in errors)
    assert any(e.startswith("No batch to show: stopped: memory ceiling 1 MB") for e in errors)


def test_preview_of_a_corrupt_image_names_the_fix_and_the_page_keeps_working(tmp_path):
    from pipeline_core.spec import load_spec

    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "broken.jpg").write_bytes(b"not an image at all")
    spec = load_spec({"source": {"type": "image_folder", "path": str(tmp_path)}})
    at = AppTest.from_file(str(REPO / "pages" / "preview.py"), default_timeout=TIMEOUT)
    at.session_state["lab.spec"] = spec
    at.run()
    _ok(at)
    errors = [e.value for e in at.error]
    assert any(
        e.startswith("No preview: reading sample 0 of the source failed: InvalidArgumentError")
        and "replace or remove it" in e
        for e in errors
    ), errors


def test_every_source_type_works_out_of_the_box_on_the_demo_data():
    from pipeline_core.spec import SOURCE_TYPES

    at = _page("design")
    for source_type in SOURCE_TYPES:
        settle(at.selectbox(key=_key(at, "source.type")).set_value(source_type).run())
        _ok(at)
        assert _spec(at).source.type == source_type
        errors = [e.value for e in at.error]
        if source_type == "csv":  # feature vectors: image augmentations say what is needed
            assert errors and "needs image features" in errors[0]
        else:
            assert not errors, (source_type, errors)
            assert len(at.dataframe[0].value) == len(_spec(at).steps) + 1


def test_a_design_with_no_code_says_why_beside_its_element_specs():
    at = _page("design")
    settle(at.selectbox(key=_key(at, "source.type")).set_value("csv").run())
    _ok(at)
    errors = [e.value for e in at.error]
    assert any(e.startswith("No code for this design: ") for e in errors), errors
    assert any("needs image features" in e for e in errors), errors


def test_a_bug_in_the_job_machinery_says_it_is_one_and_the_page_is_drawn(monkeypatch, caplog):
    def job(self, spec_json, *, holder):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr("pages._jobs.SpecJobs.job", job)
    with caplog.at_level(logging.ERROR, logger="pipeline_lab.pages"):
        at = _page("design")
    _ok(at)
    errors = [e.value for e in at.error]
    for what in ("Reading the element specs", "Writing the code"):
        assert any(e.startswith(f"{what} failed through a bug in Pipeline Lab") for e in errors)
    assert any(c.language == "json" for c in at.code), "the rest of the page is drawn"
    assert "Traceback (most recent call last)" in caplog.text
