"""describe_error: one readable line from TensorFlow's runtime and autograph errors."""

from __future__ import annotations

import pytest

from pipeline_core.errors import describe_error


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
        (ValueError("a user mistake; fix it"), "a user mistake; fix it"),
        (ValueError("two problems:\n  a\n  b"), "two problems:\n  a\n  b"),
        (RuntimeError(""), "RuntimeError"),
        (RuntimeError("first line\nsecond line"), "RuntimeError: first line"),
        (OSError("x" * 2000), "OSError: " + "x" * 600 + " ..."),
    ],
)
def test_plain_errors(exc, expected):
    assert describe_error(exc) == expected
