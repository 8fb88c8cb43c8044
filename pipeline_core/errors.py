"""One readable line from an exception, for the messages users see.

TensorFlow errors raised while a pipeline runs carry a lot of machinery
(autograph tracebacks, `{{function_node ...}}`, iterator paths, node names);
`describe_error` keeps what a user can act on, e.g.
``InvalidArgumentError: assertion failed: mixup: a label is >= num_classes=2; ...``.
"""

from __future__ import annotations

import re

_MAX_CHARS = 600
_FUNCTION_NODE = re.compile(r"\{\{function_node [^}]*\}\}\s*")
_USER_FUNCTION = re.compile(
    r"Error in user-defined function passed to [\w.]+(?::\d+)? transformation"
    r"(?: with iterator: [\w:]+)?:\s*"
)
_ASSERTION = re.compile(r"assertion failed: \[([^\]]*)\]")
_OP_TAIL = re.compile(r"\s*\[Op:\w+\].*$")


def describe_error(exc: BaseException) -> str:
    """A user-facing description of `exc`.

    A `ValueError` is a user mistake whose message already names the fix (it may list
    several problems on several lines): it is kept whole. Anything else becomes one
    line, `TypeName: message`, with TensorFlow's machinery stripped.
    """
    text = str(exc).strip()
    if isinstance(exc, ValueError) and text and not text.startswith("in user code:"):
        return text if len(text) <= 4 * _MAX_CHARS else text[: 4 * _MAX_CHARS] + " ..."
    if text.startswith("in user code:"):
        # autograph: the original error is the last line ("SomeError: message").
        last = [line.strip() for line in text.splitlines() if line.strip()][-1]
        name, _, message = last.partition(": ")
        text = message if name.isidentifier() and name.endswith(("Error", "Exception")) else last
    text = _FUNCTION_NODE.sub("", text)
    text = _USER_FUNCTION.sub("", text)
    assertion = _ASSERTION.search(text)
    if assertion:
        text = f"assertion failed: {assertion.group(1)}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("[[")]
    text = _OP_TAIL.sub("", lines[0]) if lines else ""
    text = text or type(exc).__name__
    if len(text) > _MAX_CHARS:
        text = text[:_MAX_CHARS] + " ..."
    if not isinstance(exc, ValueError) and not text.startswith(type(exc).__name__):
        text = f"{type(exc).__name__}: {text}"
    return text
