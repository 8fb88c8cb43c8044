"""Design: pick a source, edit the ordered steps, see element specs, code and the spec JSON."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import streamlit as st

from pages import _jobs, _state
from pages._widgets import STICKY, model_form, page_header, show_bug
from pipeline_core.augment import AUGMENTATIONS, param_fields
from pipeline_core.child import default_memory_limit_mb
from pipeline_core.generators import CUSTOM_TEMPLATE, GENERATOR_TEMPLATES
from pipeline_core.isolate import JobFailed, run_job
from pipeline_core.params import ParamField, fields_of
from pipeline_core.spec import (
    SOURCE_MODELS,
    SOURCE_TYPES,
    Options,
    PipelineSpec,
    SpecError,
    load_spec,
    new_source,
    new_step,
)
from pipeline_core.steps import STEPS
from pipeline_core.uploads import (
    ENV_QUOTA,
    MAX_UPLOAD_MB,
    UPLOAD_SUFFIXES,
    UploadError,
    delete_upload,
    format_size,
    list_uploads,
    upload_job,
    uploads_read_by,
    uploads_usage,
)

DEMO_IMAGES = "{data_dir}/demo/images"
FLASH_KEY = "design.flash"
UPLOADS_FLASH_KEY = "design.uploads_flash"
UPLOAD_TIMEOUT_S = 120  # checking and unpacking one upload (up to the 200 MB limit)


# --- spec edits from buttons (callbacks run before the script draws) -------------


def _apply(data: dict[str, Any], *, what: str) -> None:
    """Validate `data` and make it the spec, or keep the spec and say why not."""
    try:
        _state.replace_spec(load_spec(data))
    except SpecError as exc:
        st.session_state[FLASH_KEY] = (what, [str(p) for p in exc.problems])


def _edit_steps(change) -> None:
    data = _state.get_spec().to_dict()
    steps = data["steps"]
    what = change(steps)
    _apply(data, what=what)


def _add_step(op_key: str, at_key: str) -> None:
    op = st.session_state[op_key]
    at = st.session_state.get(at_key)

    def change(steps: list) -> str:
        where = len(steps) if at is None or at > len(steps) else at
        steps.insert(where, new_step(op))
        return f"Cannot add a {op} step " + ("at the end" if at is None else f"before step {at}")

    _edit_steps(change)


def _move_step(index: int, offset: int) -> None:
    def change(steps: list) -> str:
        steps.insert(index + offset, steps.pop(index))
        return f"Cannot move step {index}"

    _edit_steps(change)


def _remove_step(index: int) -> None:
    def change(steps: list) -> str:
        steps.pop(index)
        return f"Cannot remove step {index}"

    _edit_steps(change)


def _add_augmentation(index: int) -> None:
    def change(steps: list) -> str:
        steps[index]["augmentations"].append({"name": next(iter(AUGMENTATIONS))})
        return f"Cannot add an augmentation to step {index}"

    _edit_steps(change)


def _remove_augmentation(index: int, position: int) -> None:
    def change(steps: list) -> str:
        steps[index]["augmentations"].pop(position)
        return f"Cannot remove that augmentation from step {index}"

    _edit_steps(change)


# --- editor sections (each returns JSON data for its part of the spec) -----------


def _source_editor(spec: PipelineSpec, key: str) -> dict[str, Any]:
    current = spec.source.model_dump(mode="json")
    kind = st.selectbox(
        "Source type",
        SOURCE_TYPES,
        index=SOURCE_TYPES.index(current["type"]),
        key=f"{key}.type",
        help="Where examples come from. synthetic needs no data; file sources read "
        "the data dir or an upload below.",
    )
    model = SOURCE_MODELS[kind]
    st.caption((model.__doc__ or "").strip().splitlines()[0])
    if kind == current["type"]:
        values = current
    else:
        values = new_source(kind, **_demo_fields(kind), **_kept_shape(current, model))
    fields = [_closed_choices(kind, f) for f in fields_of(model, skip=("type",))]
    return {"type": kind, **model_form(fields, values, key=f"{key}.{kind}")}


def _kept_shape(current: dict[str, Any], model: type) -> dict[str, Any]:
    """The element shape a new source type keeps from the one it replaces: `shape`, or
    an image size from it (and back), so switching source type does not reset it."""
    shape = current.get("shape")
    size = current.get("image_size")
    wanted = model.model_fields
    if "shape" in wanted and shape:
        return {"shape": shape}
    if "shape" in wanted and size:
        return {"shape": [*size, 3]}
    if "image_size" in wanted and shape and len(shape) == 3:
        return {"image_size": shape[:2]}
    if "image_size" in wanted and size:
        return {"image_size": size}
    return {}


def _closed_choices(kind: str, field: ParamField) -> ParamField:
    """A text field whose values form a closed set, as a select box: the generator
    templates (plus "custom", for a generator passed in Python)."""
    if kind == "generator" and field.name == "template":
        return replace(field, kind="choice", choices=(*GENERATOR_TEMPLATES, CUSTOM_TEMPLATE))
    return field


def _demo_fields(kind: str) -> dict[str, Any]:
    """Paths into the generated demo data, so every file source works out of the box."""
    demo = {
        "image_folder": {"path": DEMO_IMAGES},
        "tfrecord": {"files": "{data_dir}/demo/tfrecord/shapes-*.tfrecord", "decode_image": True},
        "csv": {"path": "{data_dir}/demo/csv/shapes.csv"},
        "npz": {"path": "{data_dir}/demo/npz/shapes.npz"},
        "npy": {
            "features_path": "{data_dir}/demo/npy/features.npy",
            "labels_path": "{data_dir}/demo/npy/labels.npy",
        },
    }.get(kind)
    if demo:
        from pipeline_core.demo_data import ensure_demo_data

        with st.spinner("Writing the demo data set (once)..."):
            ensure_demo_data()
    return demo or {}


def _upload_section(spec: PipelineSpec, key: str) -> None:
    with st.expander(f"Upload data ({', '.join(UPLOAD_SUFFIXES)}; up to {MAX_UPLOAD_MB} MB)"):
        st.caption(
            "A zip of an image folder (one sub-folder per class), an .npz with arrays "
            "x and y, a CSV with a label column, or a TFRecord file. Stored in the data dir."
        )
        upload = st.file_uploader(
            "Data file", type=[s.lstrip(".") for s in UPLOAD_SUFFIXES], key=f"{key}.data"
        )
        if upload is not None:
            _use_upload(spec, upload)
    _stored_uploads(spec)


def _use_upload(spec: PipelineSpec, upload: Any) -> None:
    try:  # checked and unpacked in a child process: the server never parses user data
        with st.spinner(f"Checking {upload.name} in a child process…"):
            answer = run_job(
                upload_job,
                args=(upload.name, upload.getvalue()),
                what="checking the upload",
                timeout_s=UPLOAD_TIMEOUT_S,
                memory_limit_mb=default_memory_limit_mb(),
            )
    except JobFailed as exc:
        st.error(f"Upload refused: {exc.reason}")
        return
    if answer.refused is not None:
        st.error(f"Upload refused: {answer.refused}")
        return
    stored = answer.stored
    data = spec.to_dict()
    data["source"] = new_source(stored.source["type"], **stored.source)
    try:
        _state.replace_spec(load_spec(data))
    except SpecError as exc:
        st.error("The uploaded data cannot be used with these steps:")
        _problems(exc)
        return
    st.toast(f"Using {upload.name} as a {stored.kind} source. " + " ".join(stored.notes))
    st.rerun()


def _delete_upload(name: str, in_use: bool) -> None:
    """Delete button: delete a stored upload and say what happened on the next draw."""
    try:
        freed = delete_upload(name)
    except UploadError as exc:
        st.session_state[UPLOADS_FLASH_KEY] = ("error", f"Not deleted: {exc}")
        return
    message = f"Deleted {name} ({format_size(freed)} freed)."
    if in_use:
        message += (
            " This design still reads it, so it cannot run until you pick another source "
            "or upload the data again."
        )
    st.session_state[UPLOADS_FLASH_KEY] = ("warning" if in_use else "success", message)


def _stored_uploads(spec: PipelineSpec) -> None:
    """The uploads on disk, the quota they use, and a delete button for each."""
    flash = st.session_state.pop(UPLOADS_FLASH_KEY, None)
    try:
        usage = uploads_usage()
        uploads = list_uploads()
    except UploadError as exc:  # e.g. an unreadable quota setting
        st.error(f"Stored uploads: {exc}")
        return
    in_use = set(uploads_read_by(spec.source.model_dump(mode="json")))
    with st.expander(f"Stored uploads ({usage.describe()})", expanded=flash is not None):
        if flash:
            kind, message = flash
            {"error": st.error, "warning": st.warning, "success": st.success}[kind](message)
        share = usage.used_bytes / usage.quota_bytes if usage.quota_bytes else 1.0
        st.progress(
            min(1.0, share),
            text=f"{usage.describe()} of the uploads quota used (set by {ENV_QUOTA})",
        )
        if not uploads:
            st.caption("No uploads stored yet.")
            return
        for upload in uploads:
            name, details, remove = st.columns([6, 4, 1], vertical_alignment="center")
            used = upload.name in in_use
            name.markdown(f"`{upload.name}`" + (" (this design reads it)" if used else ""))
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(upload.modified))
            details.caption(f"{upload.kind} · {format_size(upload.size_bytes)} · {when}")
            remove.button(
                ":material/delete:",
                key=f"design.uploads.delete.{upload.name}",
                help="Delete this upload from the data dir"
                + (
                    " (the design keeps pointing at it and cannot run until changed)"
                    if used
                    else ""
                ),
                on_click=_delete_upload,
                args=(upload.name, used),
            )
        if in_use:
            st.caption(
                "Deleting an upload this design reads leaves the design pointing at a missing "
                "file: pick another source or upload the data again before profiling."
            )


def _step_header(index: int, count: int, op: str, key: str) -> None:
    title, buttons = st.columns([3, 2], vertical_alignment="center")
    title.markdown(f"**{index}. {op}**", help=_doc(STEPS[op].model))
    with buttons.container(horizontal=True, horizontal_alignment="right", gap="small"):
        st.button(
            ":material/arrow_upward:",
            key=f"{key}.up",
            help="Move up",
            disabled=index == 0,
            on_click=_move_step,
            args=(index, -1),
        )
        st.button(
            ":material/arrow_downward:",
            key=f"{key}.down",
            help="Move down",
            disabled=index == count - 1,
            on_click=_move_step,
            args=(index, 1),
        )
        st.button(
            ":material/delete:",
            key=f"{key}.remove",
            help="Remove this step",
            on_click=_remove_step,
            args=(index,),
        )


def _doc(model: type) -> str:
    return (model.__doc__ or "").strip().splitlines()[0]


def _augmentation_editor(index: int, position: int, aug: dict[str, Any], key: str) -> dict:
    names = list(AUGMENTATIONS)
    pick, remove = st.columns([8, 1], vertical_alignment="bottom")
    name = pick.selectbox(
        f"Augmentation {position + 1}",
        names,
        index=names.index(aug["name"]),
        key=f"{key}.name",
        help="Each augmentation's parameters appear below with their ranges and defaults.",
    )
    remove.button(
        ":material/close:",
        key=f"{key}.remove",
        help="Remove this augmentation",
        on_click=_remove_augmentation,
        args=(index, position),
    )
    st.caption(AUGMENTATIONS[name].description)
    values = aug if aug["name"] == name else {}
    return {"name": name, **model_form(param_fields(name), values, key=f"{key}.{name}")}


def _step_editor(index: int, step: dict[str, Any], count: int, key: str) -> dict[str, Any]:
    op = step["op"]
    with st.container(border=True):
        _step_header(index, count, op, key)
        out: dict[str, Any] = {"op": op}
        if op == "map":
            out["augmentations"] = [
                _augmentation_editor(index, j, aug, f"{key}.aug{j}")
                for j, aug in enumerate(step["augmentations"])
            ]
            st.button(
                "Add augmentation",
                key=f"{key}.add_aug",
                icon=":material/add:",
                on_click=_add_augmentation,
                args=(index,),
            )
        fields = fields_of(STEPS[op].model, skip=("op", "augmentations"))
        out.update(model_form(fields, step, key=f"{key}.fields", columns=2))
        return out


def _steps_editor(spec: PipelineSpec, key: str) -> list[dict[str, Any]]:
    steps = spec.to_dict()["steps"]
    edited = [_step_editor(i, step, len(steps), f"{key}.{i}") for i, step in enumerate(steps)]
    if not steps:
        st.info("No steps yet: the pipeline yields the source's elements one by one.")
    pick, where, add = st.columns([2, 1.3, 1], vertical_alignment="bottom")
    pick.selectbox(
        "New step",
        list(STEPS),
        key=f"{key}.new_op",
        format_func=lambda op: f"{op} — {_doc(STEPS[op].model)}",
    )
    where.selectbox(
        "Insert",
        [None, *range(len(steps))],
        key=f"{key}.new_at",
        format_func=lambda i: "at the end" if i is None else f"before {i}: {steps[i]['op']}",
    )
    add.button(
        "Add step",
        key=f"{key}.add",
        icon=":material/add:",
        width="stretch",
        on_click=_add_step,
        args=(f"{key}.new_op", f"{key}.new_at"),
    )
    return edited


def _options_editor(spec: PipelineSpec, key: str) -> dict[str, Any]:
    with st.expander("tf.data options"):
        values = spec.options.model_dump(mode="json")
        return model_form(fields_of(Options), values, key=key, columns=3)


# --- results of the design -------------------------------------------------------


def _problems(exc: SpecError) -> None:
    st.markdown("\n".join(f"- `{p.path or '(spec)'}`: {p.message}" for p in exc.problems))


ELEMENT_SPECS_HOLDER = "design.element_specs"  # which spec this session's table waits for
CODE_HOLDER = "design.code"  # which spec this session's code tab waits for
BUILDING = "Building the pipeline in a child process to read its element specs…"
WRITING = "Writing the code in a child process (it reads the source's files)…"


def _stage_rows(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "after": s["stage"],
            "features": s["features"],
            "label": s["label"],
            "count": "?" if s["cardinality"] is None else str(s["cardinality"]),
        }
        for s in stages
    ]


def _element_spec_view(spec: PipelineSpec) -> None:
    """The element specs after each stage. Building reads the user's data with TensorFlow,
    so it runs in a child process (`build.element_specs_job`); the result is kept per spec
    for every session, and the page draws the rest while the child works."""
    jobs, spec_json = _jobs.element_specs(), spec.to_json(indent=None)
    try:
        job = jobs.job(spec_json, holder=ELEMENT_SPECS_HOLDER)
    except Exception as exc:
        show_bug("Reading the element specs", exc)
        return
    if not job.done:
        _jobs.wait(job, BUILDING)
        return
    failed = _jobs.failure(job)
    if failed is not None:  # a crash, the time limit or the memory ceiling
        st.error(failed, icon=":material/error:")
        st.button(
            "Try again",
            key="design.element_specs.retry",
            icon=":material/refresh:",
            on_click=jobs.forget,
            args=(spec_json,),
        )
        return
    found = job.result(timeout=0)
    if found["error"] is not None:
        st.error(f"The pipeline cannot be built: {found['error']}")
        return
    st.dataframe(
        _stage_rows(found["stages"]),
        column_config={
            "count": st.column_config.TextColumn(help="Elements (? = unknown or infinite)")
        },
        hide_index=True,
        width="stretch",
    )


def _code_view(spec: PipelineSpec) -> None:
    """The exported code, written in the same child as the element specs (it plans the
    user's source); the element-spec view redraws the page once that child is done."""
    spec_json = spec.to_json(indent=None)
    try:
        job = _jobs.element_specs().job(spec_json, holder=CODE_HOLDER)
    except Exception as exc:
        show_bug("Writing the code", exc)
        return
    if not job.done:
        st.info(WRITING, icon=":material/hourglass_top:")
        return
    failed = _jobs.failure(job)
    if failed is not None:
        st.error(failed, icon=":material/error:")
        return
    found = job.result(timeout=0)
    code = found["code"]
    if code is None:
        st.error(f"No code for this design: {found['code_error']}")
        return
    st.download_button(
        "Download pipeline.py",
        code,
        file_name="pipeline.py",
        mime="text/x-python",
        on_click="ignore",
        key="design.code_download",
        icon=":material/download:",
    )
    st.code(code, language="python", height=520, wrap_lines=True)


def _json_view(spec: PipelineSpec, key: str) -> None:
    st.download_button(
        "Download spec JSON",
        spec.to_json(),
        file_name="pipeline.json",
        mime="application/json",
        on_click="ignore",
        key="design.json_download",
        icon=":material/download:",
    )
    upload = st.file_uploader("Load a spec (JSON)", type=["json"], key=f"{key}.spec_upload")
    if upload is not None:
        try:
            loaded = load_spec(upload.getvalue())
        except SpecError as exc:
            count = len(exc.problems)
            st.error(
                f"{upload.name} is not a valid pipeline spec "
                f"({count} problem{'s' if count != 1 else ''}):"
            )
            _problems(exc)
        else:
            _state.replace_spec(loaded)
            st.toast(f"Loaded {loaded.name!r} from {upload.name}")
            st.rerun()
    st.code(spec.to_json(), language="json", height=420, wrap_lines=True)


def _flash() -> None:
    flash = st.session_state.pop(FLASH_KEY, None)
    if flash:
        what, problems = flash
        st.error(f"{what}: " + "; ".join(problems))


# --- page ------------------------------------------------------------------------

page_header("Design")
spec = _state.get_spec()
rev = _state.revision()
key = f"design.r{rev}"
_flash()

editor, results = st.columns([1, 1], gap="medium")
with editor:
    problems_slot = st.container()  # an edit's problems show here, above the fold
    name = st.text_input("Pipeline name", value=spec.name, key=f"{key}.name")
    st.subheader("Source")
    source = _source_editor(spec, f"{key}.source")
    _upload_section(spec, f"{key}.upload")
    st.subheader("Steps")
    steps = _steps_editor(spec, f"{key}.steps")
    options = _options_editor(spec, f"{key}.options")

candidate = {"schema_version": 1, "name": name, "source": source, "steps": steps}
candidate["options"] = options
if candidate != spec.to_dict():
    try:
        spec = load_spec(candidate)
    except SpecError as exc:
        with problems_slot:
            st.error("This edit is not applied yet; fix these fields:")
            _problems(exc)
    else:
        _state.set_spec(spec)

with results, st.container(key=f"{STICKY}design-results"):  # in view beside long steps
    shapes, code, as_json = st.tabs(["Element spec", "Code", "Spec JSON"])
    with shapes:
        st.caption("Shapes and dtypes after each step, updated as you edit.")
        _element_spec_view(spec)
    with code:
        _code_view(spec)
    with as_json:
        _json_view(spec, key)
