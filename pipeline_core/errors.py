"""User mistakes apart from bugs, and one readable description of any exception.

`PipelineLabError` is the base of every error that means "the input is wrong"
(a spec, a file, an upload, a parameter, a run id); its message names the
problem and the fix. The command line shows such a message and exits 2; a page
shows it with `st.error`. Every other exception, a `ValueError` raised by a
library included, is a bug: the command line prints its traceback and exits 1,
a page says it is a bug and logs the traceback.

TensorFlow errors raised while a pipeline runs carry a lot of machinery
(autograph tracebacks, `{{function_node ...}}`, iterator paths, node names);
`describe_error` keeps what a user can act on, e.g.
``InvalidArgumentError: assertion failed: mixup: a label is >= num_classes=2; ...``.
"""

from __future__ import annotations

import re


class PipelineLabError(ValueError):
    """A user mistake; its message names the problem and the fix.

    Every user-mistake error of the package subclasses it. It is a `ValueError`,
    as a bad value is; catch `PipelineLabError` to tell a user's mistake from a bug.
    """


_MAX_CHARS = 600
_FUNCTION_NODE = re.compile(r"\{\{function_node [^}]*\}\}\s*")
_USER_FUNCTION = re.compile(
    r"Error in user-defined function passed to [\w.]+(?::\d+)? transformation"
    r"(?: with iterator: [\w:]+)?:\s*"
)
_ASSERTION = re.compile(r"assertion failed: \[([^\]]*)\]")
_OP_TAIL = re.compile(r"\s*\[Op:\w+\].*$")


def describe_error(exc: BaseException) -> str:
    """A user-facing description of `exc`, in one style: its own message, cleaned.

    A `PipelineLabError` keeps every line (a spec error lists one problem a line).
    Anything else is one line, TensorFlow's machinery stripped, led by the type's
    name (`InvalidArgumentError: ...`); a `ValueError` reads as a sentence about
    the input (TensorFlow's shape and dtype checks, an augmentation that cannot
    take these features), so its name is left out.
    """
    text = str(exc).strip()
    user_mistake = isinstance(exc, PipelineLabError)
    if text.startswith("in user code:"):
        # autograph: the original error is the last line ("SomeError: message").
        last = [line.strip() for line in text.splitlines() if line.strip()][-1]
        name, _, message = last.partition(": ")
        text = message if name.isidentifier() and name.endswith(("Error", "Exception")) else last
    elif user_mistake and text:
        return text if len(text) <= 4 * _MAX_CHARS else text[: 4 * _MAX_CHARS] + " ..."
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
