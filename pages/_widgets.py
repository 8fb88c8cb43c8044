"""Widgets generated from parameter descriptions (`ParamField`), never a form per item.

`field_widget` draws one widget for one field and returns the value as JSON
data; a value the widget cannot turn into JSON data (e.g. "3, x" for a shape)
is returned as typed so spec validation reports it with its field path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import streamlit as st
from pydantic_core import PydanticUndefined

from pages import _state
from pipeline_core.errors import describe_error
from pipeline_core.params import ParamField

_PARALLELISM = [None, "autotune", 1, 2, 4, 8, 16]
_BUFFER = ["autotune", 0, 1, 2, 4, 8, 16, 32, 64]


def _label(name: str) -> str:
    return name.replace("_", " ")


def _help(field: ParamField) -> str | None:
    parts = [field.description.rstrip(".")] if field.description else []
    if field.minimum is not None or field.maximum is not None:
        low = "-inf" if field.minimum is None else f"{field.minimum:g}"
        high = "inf" if field.maximum is None else f"{field.maximum:g}"
        parts.append(f"range {low} to {high}")
    parts.append("required" if _required(field) else f"default {json.dumps(field.default)}")
    return "; ".join(parts) or None


def _required(field: ParamField) -> bool:
    return field.default is PydanticUndefined


def _with(options: Sequence[Any], value: Any) -> list[Any]:
    options = list(options)
    if value not in options:
        options.append(value)
    return options


def _fmt_choice(value: Any) -> str:
    if value is None:
        return "null"
    if value == "":
        return '"" (none)'
    return str(value)


def _fmt_optional_bool(value: Any) -> str:
    """null leaves the choice to TensorFlow (or to the pipeline options): say so."""
    return "default (null)" if value is None else str(value)


_JS_MAX_INT = 2**53 - 1


def _number(field: ParamField, value: Any, *, key: str, label: str, integer: bool) -> Any:
    cast = int if integer else float
    low = None if field.minimum is None else cast(field.minimum)
    high = None if field.maximum is None else cast(field.maximum)
    if high is not None and high > _JS_MAX_INT:  # a browser number holds 2**53 - 1 at most
        high = None
    if value is not None:
        value = cast(value)
    if not integer and low is not None and high is not None and not field.optional:
        return st.slider(
            label,
            min_value=low,
            max_value=high,
            value=value,
            step=(high - low) / 100 or 0.01,
            key=key,
            help=_help(field),
        )
    # No min_value/max_value: Streamlit would mark a value outside them red, say why only
    # on hover and keep the old value silently. The value goes to the spec, whose check
    # lists it above the steps, and the reason shows under the field.
    typed = st.number_input(
        label,
        value=value,
        step=1 if integer else None,
        key=key,
        help=_help(field),
        placeholder="null" if field.optional else None,
    )
    if typed is not None and not _within(typed, low, high):
        st.caption(
            f":red[{label[:1].upper()}{label[1:]} must be {_bounds_text(low, high)}: not applied]"
        )
    return typed


def _within(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _bounds_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}"
    return f"at least {low:g}" if low is not None else f"at most {high:g}"


def number_setting(
    where: Any,
    label: str,
    *,
    key: str,
    default: float,
    minimum: float | None = None,
    maximum: float | None = None,
    **kwargs: Any,
) -> float:
    """A number input (in `where`, a column or `st`) kept across pages (`_state.kept`).

    A value outside [minimum, maximum] is put back to the last good one and the reason
    shows under the field: Streamlit's own bounds mark the field red, say why only on
    hover and keep the old value silently.
    """
    if (minimum, maximum) != (None, None):
        rule = f"Must be {_bounds_text(minimum, maximum)}."
        kwargs["help"] = f"{kwargs['help']} {rule}" if kwargs.get("help") else rule
    value = where.number_input(label, key=_state.kept(key, default, (minimum, maximum)), **kwargs)
    refused = _state.reverted(key)
    if refused is not None:
        where.caption(
            f":red[{label} must be {_bounds_text(minimum, maximum)}: "
            f"{refused:g} was put back to {value:g}]"
        )
    return value


def _sequence(field: ParamField, value: Any, *, key: str, label: str) -> Any:
    text = "" if value is None else ", ".join(str(v) for v in value)
    typed = st.text_input(
        label, value=text, key=key, help=_help(field), placeholder="e.g. 32, 32, 3"
    )
    if not typed.strip():
        return None if field.optional else []
    cast = int if field.kind == "ints" else float
    try:
        return [cast(part) for part in typed.replace(" ", "").strip(",").split(",")]
    except ValueError:
        return typed


def _json(field: ParamField, value: Any, *, key: str, label: str) -> Any:
    text = st.text_area(label, value=json.dumps(value), key=key, help=_help(field), height=68)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        st.caption(f":red[{label}: not valid JSON]")
        return text


def field_widget(field: ParamField, value: Any, *, key: str, label: str | None = None) -> Any:
    """Draw the widget for one field and return its value as JSON data."""
    label = label or _label(field.name)
    kind = field.kind
    if kind == "bool" and not field.optional:
        return st.toggle(label, value=bool(value), key=key, help=_help(field))
    if kind == "bool":
        options = [None, True, False]
        return st.selectbox(
            label,
            options,
            index=options.index(value),
            key=key,
            help=_help(field),
            format_func=_fmt_optional_bool,
        )
    if kind in ("int", "float"):
        return _number(field, value, key=key, label=label, integer=kind == "int")
    if kind == "choice":
        options = _with(([None] if field.optional else []) + list(field.choices or ()), value)
        return st.selectbox(
            label,
            options,
            index=options.index(value),
            key=key,
            help=_help(field),
            format_func=_fmt_choice,
        )
    if kind in ("parallelism", "buffer"):
        options = _with(_PARALLELISM if kind == "parallelism" else _BUFFER, value)
        return st.selectbox(
            label,
            options,
            index=options.index(value),
            key=key,
            help=_help(field),
            format_func=_fmt_parallel,
        )
    if kind == "text":
        typed = st.text_input(
            label,
            value=value or "",
            key=key,
            help=_help(field),
            placeholder="null" if field.optional else None,
        )
        return None if field.optional and not typed else typed
    if kind in ("ints", "floats"):
        return _sequence(field, value, key=key, label=label)
    return _json(field, value, key=key, label=label)


def _fmt_parallel(value: Any) -> str:
    if value is None:
        return "sequential (null)"
    return str(value)


def model_form(
    fields: Sequence[ParamField], values: dict[str, Any], *, key: str, columns: int = 3
) -> dict[str, Any]:
    """Widgets for every field, laid out in a grid; returns {name: value}."""
    out: dict[str, Any] = {}
    if not fields:
        return out
    cols = st.columns(min(columns, len(fields)))
    for i, field in enumerate(fields):
        with cols[i % len(cols)]:
            value = values.get(field.name, None if _required(field) else field.default)
            out[field.name] = field_widget(field, value, key=f"{key}.{field.name}")
    return out


_COMPACT = """<style>
[data-testid="stMainBlockContainer"] {padding-top: 2.2rem; padding-left: 2.5rem;
  padding-right: 2.5rem; max-width: 100%;}
[data-testid="stColumn"]:has([class*="st-key-sticky-"]) {position: sticky; top: 1rem;
  align-self: flex-start;}
</style>"""
STICKY = "sticky-"  # a container keyed with this prefix keeps its column in view while scrolling


def short_number(value: float | None, unit: str = "") -> str:
    """At most three significant digits before the unit ("42.1 ms", "1,234"), "—" if unknown.

    KPI tiles truncate long text, so figures are rounded for display only.
    """
    if value is None or value != value:  # None or NaN
        return "—"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f} {unit}".strip()


def page_header(title: str, caption: str | None = None) -> None:
    """The page title (and a caption) with the compact spacing every page shares; first
    the kept settings are copied, so a value changed just before this page change stays."""
    _state.keep_all()
    st.html(_COMPACT)
    st.title(title)
    if caption:
        st.caption(caption)


_log = logging.getLogger("pipeline_lab.pages")


def bug_message(what: str, exc: BaseException) -> str:
    """Log the traceback of `exc` and return the text saying `what` failed through a bug.

    For any exception that is not a `PipelineLabError` (those are the user's
    mistakes: show their own message).
    """
    _log.error("%s failed through a bug", what, exc_info=exc)
    detail = describe_error(exc)
    if not detail.startswith(type(exc).__name__):
        detail = f"{type(exc).__name__}: {detail}"
    return (
        f"{what} failed through a bug in Pipeline Lab, not a problem with your input "
        f"({detail}). The traceback is in the server's log."
    )


def show_bug(what: str, exc: BaseException) -> None:
    """`bug_message` as an error box; the page goes on drawing."""
    st.error(bug_message(what, exc), icon=":material/bug_report:")
