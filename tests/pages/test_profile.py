"""AppTest: the Profile page's memory guard, with a small "available memory" injected.

The default spec's synthetic source holds its 2,048 generated 32x32x3 float32
examples (24 MiB), the largest holder of its ~42 MiB estimate (with the 12 MiB
shuffle buffer and the prefetch). `available_bytes` is patched where
the page reads it (the estimate is made in a child process, the verdict in the server
against the memory available then), so the verdict does not depend on this machine.
"""

from __future__ import annotations

import pytest

from pipeline_core.analysis import memory
from pipeline_core.spec import load_spec
from tests import REPO

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.pages.helpers import settle  # noqa: E402

TIMEOUT = 90
MIB = 1024 * 1024


def _profile_page(monkeypatch, available_mib: float) -> AppTest:
    monkeypatch.setattr(memory, "available_bytes", lambda: int(available_mib * MIB))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    settle(at.switch_page("pages/profile.py").run())  # the estimate is made in a child process
    assert not at.exception, [e.value for e in at.exception]
    return at


def _captions(at: AppTest) -> str:
    return "\n".join(str(c.value) for c in at.caption)


def _guard_errors(at: AppTest) -> list[str]:
    """Errors of the memory guard (a run left by another AppTest may show its own)."""
    return [e.value for e in at.error if "memory" in e.value and "The run failed" not in e.value]


def test_an_estimate_above_available_memory_blocks_start_until_confirmed(monkeypatch):
    at = _profile_page(monkeypatch, available_mib=8)
    assert "largest: synthetic source data at `source`" in _captions(at)
    assert "8.0 MiB available" in _captions(at)
    assert any("would exhaust memory" in e for e in _guard_errors(at))
    assert at.button(key="profile.start").disabled is True
    confirm = [c for c in at.checkbox if c.label == "Run anyway"]
    assert len(confirm) == 1 and confirm[0].value is False
    confirm[0].check().run()
    assert not at.exception
    assert at.button(key="profile.start").disabled is False


def test_an_estimate_above_half_of_available_memory_warns_but_allows_start(monkeypatch):
    at = _profile_page(monkeypatch, available_mib=50)  # ~30 MiB estimated: over half
    assert any("more than half of what is free" in w.value for w in at.warning)
    assert not _guard_errors(at) and not [c for c in at.checkbox if c.label == "Run anyway"]
    assert at.button(key="profile.start").disabled is False


def test_plenty_of_memory_shows_the_estimate_only(monkeypatch):
    at = _profile_page(monkeypatch, available_mib=64 * 1024)
    assert "Memory estimate: **30.0 MiB**" in _captions(at)
    assert not at.warning and not _guard_errors(at)
    assert at.button(key="profile.start").disabled is False


def test_a_confirmation_holds_for_one_design_only(monkeypatch):
    at = _profile_page(monkeypatch, available_mib=8)
    [c for c in at.checkbox if c.label == "Run anyway"][0].check().run()
    spec = at.session_state["lab.spec"]
    at.session_state["lab.spec"] = spec.replace(name="another design")
    settle(at.run())
    assert at.button(key="profile.start").disabled is True
    assert [c.value for c in at.checkbox if c.label == "Run anyway"] == [False]


def test_a_local_distribute_step_offers_a_scaling_study(monkeypatch):
    at = _profile_page(monkeypatch, available_mib=64 * 1024)
    assert not [e for e in at.expander if "Scaling study" in e.label]  # no distribute step
    at.session_state["lab.spec"] = load_spec(
        {
            "name": "served",
            "source": {"type": "synthetic", "num_examples": 64, "shape": [2]},
            "steps": [{"op": "distribute"}, {"op": "batch", "batch_size": 8}],
        }
    )
    settle(at.run())
    assert not at.exception, [e.value for e in at.exception]
    assert [e for e in at.expander if "Scaling study" in e.label]
    counts = at.text_input(key="profile.scale_counts")
    assert counts.value == "1, 2, 4"
    assert at.button(key="profile.scale").disabled is False
    counts.set_value("2").run()
    assert at.button(key="profile.scale").disabled is True  # two counts or more
    assert "compares two worker counts or more" in _captions(at)
    at.text_input(key="profile.scale_counts").set_value("1, x").run()
    assert at.button(key="profile.scale").disabled is True
    assert "are not whole numbers: write them like 1,2,4" in _captions(at)
