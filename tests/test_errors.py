"""One base class for user mistakes; describe_error: readable text from any error."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import pipeline_core
from pipeline_core.errors import PipelineLabError, describe_error


def test_a_failed_assertion_inside_a_map_keeps_only_its_message(tf):
    def check(x):
        tf.debugging.Assert(x < 1, ["x too big; fix"])
        return x

    ds = tf.data.Dataset.range(3).map(check, num_parallel_calls=2)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        list(ds)
    text = describe_error(info.value)
    assert text.startswith("InvalidArgumentError: assertion failed: x too big; fix"), text
    assert "function_node" not in text and "[[" not in text and "\n" not in text


def test_an_autograph_error_becomes_its_last_line(tf):
    def bad(x):
        raise ValueError("the shape is wrong; resize first")

    with pytest.raises(Exception) as info:
        tf.data.Dataset.range(2).map(lambda x: tf.py_function(bad, [x], tf.int64) + bad(x))
    assert "the shape is wrong; resize first" in describe_error(info.value)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (PipelineLabError("a user mistake; fix it"), "a user mistake; fix it"),
        (PipelineLabError("two problems:\n  a\n  b"), "two problems:\n  a\n  b"),
        (ValueError("a library's check failed\n  details"), "a library's check failed"),
        (KeyError("x"), "KeyError: 'x'"),
        (RuntimeError(""), "RuntimeError"),
        (RuntimeError("first line\nsecond line"), "RuntimeError: first line"),
        (OSError("x" * 2000), "OSError: " + "x" * 600 + " ..."),
    ],
)
def test_plain_errors(exc, expected):
    assert describe_error(exc) == expected


def _value_errors() -> dict[str, type]:
    """Every `ValueError` subclass the package defines (all its modules imported)."""
    found = {}
    for module in pkgutil.walk_packages(pipeline_core.__path__, "pipeline_core."):
        if module.name.endswith("__main__"):
            continue
        for name, value in inspect.getmembers(importlib.import_module(module.name)):
            if (
                inspect.isclass(value)
                and value.__module__ == module.name
                and issubclass(value, ValueError)
            ):
                found[f"{module.name}.{name}"] = value
    return found


def test_every_user_mistake_error_is_a_pipeline_lab_error():
    classes = _value_errors()
    assert len(classes) >= 13, sorted(classes)  # the base and its 12 user-mistake errors
    stray = [name for name, cls in classes.items() if not issubclass(cls, PipelineLabError)]
    assert not stray, f"ValueError subclasses that are not PipelineLabErrors: {stray}"
