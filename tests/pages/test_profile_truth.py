"""AppTest: the Profile page tells the truth about the design (issue 11): Start is off,
with the reason, while the design cannot be built; results of a run made before the
design changed say so; a stopped run's progress stays where it stopped."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.pages.helpers import (  # noqa: E402
    app,
    design_key,
    settle,  # noqa: E402
)


def test_start_is_off_with_the_reason_while_the_design_cannot_be_built():
    at = settle(app())
    # the default map step holds image augmentations; a CSV source yields feature vectors
    settle(at.selectbox(key=design_key(at, "source.type")).set_value("csv").run())
    assert any("needs image features" in e.value for e in at.error)
    settle(at.switch_page("pages/profile.py").run())
    assert not at.exception
    start = at.button(key="profile.start")
    assert start.disabled is True
    errors = [e.value for e in at.error]
    assert any(e.startswith("Start is off: the design cannot be built:") for e in errors), errors
    assert any("needs image features" in e for e in errors)


def _run_to_end(at: AppTest, *, stop: bool) -> None:
    at.button(key="profile.start").click().run()
    if stop:
        time.sleep(1.0)
        at.button(key="profile.stop").click().run()
    deadline = time.monotonic() + 120
    while not at.success and not at.error and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()


def test_results_of_an_earlier_design_say_so_and_a_stop_keeps_its_progress():
    at = settle(app().switch_page("pages/profile.py").run())
    at.radio(key="profile.limit").set_value("seconds").run()
    at.number_input(key="profile.seconds").set_value(60.0).run()
    _run_to_end(at, stop=True)
    assert any("Run stopped" in s.value for s in at.success), [e.value for e in at.error]
    assert at.get("progress")[0].value < 100  # stopped after seconds of a 60 s limit
    assert not any("earlier design" in i.value for i in at.info)
    at.switch_page("pages/design.py").run()
    at.text_input(key=design_key(at, "name")).set_value("renamed design").run()
    at.switch_page("pages/profile.py").run()
    assert any("earlier design" in i.value for i in at.info), [i.value for i in at.info]


SHORT = {
    "name": "a short dataset",
    "source": {"type": "synthetic", "num_examples": 40, "shape": [4, 4, 3]},
    "steps": [{"op": "batch", "batch_size": 8}],
}


def test_a_short_dataset_runs_to_the_time_limit_and_runs_show_their_settings():
    import json

    from pipeline_core.store import RunStore

    at = settle(app())
    at.file_uploader(key=design_key(at, "spec_upload")).set_value(
        ("short.json", json.dumps(SHORT).encode(), "application/json")
    ).run()
    settle(at.switch_page("pages/profile.py").run())
    assert at.checkbox(key="profile.repeat").value is True  # on by default
    at.radio(key="profile.limit").set_value("seconds").run()
    at.number_input(key="profile.seconds").set_value(2.0).run()
    _run_to_end(at, stop=False)
    assert any("Run completed" in s.value for s in at.success), [e.value for e in at.error]
    store = RunStore()
    repeated = max((r for r in store.list_runs() if r.name == SHORT["name"]), key=lambda r: r.id)
    assert repeated.batches > 5, "five batches a pass, repeated for 2 s"
    assert repeated.settings["repeat"] is True
    at.checkbox(key="profile.repeat").uncheck().run()
    at.radio(key="profile.limit").set_value("batches").run()
    at.number_input(key="profile.batches").set_value(50).run()
    _run_to_end(at, stop=False)
    once = max((r for r in store.list_runs() if r.name == SHORT["name"]), key=lambda r: r.id)
    assert once.batches == 5 and once.settings["repeat"] is False
    at.query_params["run"] = f"{repeated.id},{once.id}"
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    texts = [m.value for m in at.markdown]
    assert "**Settings differences**" in texts
    frames = [d.value for d in at.dataframe]
    assert any("setting" in f.columns and "repeat data" in list(f["setting"]) for f in frames)
