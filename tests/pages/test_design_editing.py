"""AppTest: editing on the Design page tells the truth and keeps what the user set
(issue 11, item 6): problems above the fold, new maps parallel like the default, steps
inserted where asked, the element shape kept across source types, closed choices as
select boxes."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.pages.helpers import app, design_key  # noqa: E402


def _spec(at: AppTest):
    return at.session_state["lab.spec"]


def test_a_new_map_is_parallel_and_goes_where_asked():
    at = app()
    assert [s.op for s in _spec(at).steps] == ["shuffle", "map", "batch", "prefetch"]
    at.selectbox(key=design_key(at, "steps.new_op")).set_value("map").run()
    at.selectbox(key=design_key(at, "steps.new_at")).set_value(2).run()  # before the batch
    at.button(key=design_key(at, "steps.add")).click().run()
    assert not at.exception
    steps = _spec(at).steps
    assert [s.op for s in steps] == ["shuffle", "map", "map", "batch", "prefetch"]
    assert steps[2].num_parallel_calls == "autotune"


def test_switching_source_type_keeps_the_element_shape():
    at = app()
    at.selectbox(key=design_key(at, "source.type")).set_value("numpy").run()
    assert list(_spec(at).source.shape) == [32, 32, 3]
    at.selectbox(key=design_key(at, "source.type")).set_value("image_folder").run()
    assert list(_spec(at).source.image_size) == [32, 32]
    at.selectbox(key=design_key(at, "source.type")).set_value("synthetic").run()
    assert list(_spec(at).source.shape) == [32, 32, 3]


def test_the_generator_template_is_a_select_box_of_the_templates():
    at = app()
    at.selectbox(key=design_key(at, "source.type")).set_value("generator").run()
    template = at.selectbox(key=design_key(at, "source.generator.template"))
    assert template.options == ["random_arrays", "slow_reader", "counting", "custom"]
    assert template.help.startswith("Built-in generator template; default")
    template.set_value("counting").run()
    assert _spec(at).source.template == "counting"


def test_an_edit_that_breaks_the_spec_lists_its_problems_above_the_source():
    at = app()
    at.selectbox(key=design_key(at, "source.type")).set_value("csv").run()
    at.text_input(key=design_key(at, "source.csv.path")).set_value("").run()
    errors = [e.value for e in at.error]
    assert "This edit is not applied yet; fix these fields:" in errors
    # drawn in the slot above the name input, not below the steps
    tree = [type(e).__name__ + ":" + str(getattr(e, "value", "")) for e in at.main]
    first_error = next(i for i, t in enumerate(tree) if "not applied yet" in t)
    name_input = next(i for i, t in enumerate(tree) if t.startswith("TextInput:"))
    assert first_error < name_input, tree[:10]


def test_a_number_below_its_minimum_is_marked_beside_the_field_and_not_applied():
    at = app()
    spec = at.session_state["lab.spec"]
    index = next(i for i, s in enumerate(spec.steps) if s.op == "batch")
    before = spec.steps[index].batch_size
    at.number_input(key=design_key(at, f"steps.{index}.fields.batch_size")).set_value(-5).run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert any("Batch size must be at least 1: not applied" in c for c in captions), captions
    assert "This edit is not applied yet; fix these fields:" in [e.value for e in at.error]
    assert at.session_state["lab.spec"].steps[index].batch_size == before  # the spec keeps it
