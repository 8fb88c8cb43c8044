"""Preview: real samples before and after the augmentations, and a batch's figures."""

from __future__ import annotations

from typing import Any

import streamlit as st

from pages import _state
from pages._widgets import model_form, number_setting, page_header
from pipeline_core import charts
from pipeline_core.augment import AUGMENTATIONS, param_fields
from pipeline_core.child import default_memory_limit_mb
from pipeline_core.isolate import JobFailed, run_job
from pipeline_core.preview import (
    Preview,
    demo_samples_source,
    enlarged,
    pair_image,
    preview_job,
)
from pipeline_core.spec import load_spec

PAIRS_PER_ROW = 2  # a pair of 192 px images needs ~400 px: two pairs a row at 1280 px
JOB_TIMEOUT_S = 120
MODES = ("The design's map steps", "One augmentation alone")
SAMPLE_SOURCES = ("the demo images", "the design's synthetic source")


def _reroll() -> None:
    st.session_state["preview.seed"] = int(st.session_state.get("preview.seed", 0)) + 1


# Samples and the first batch run the user's source and augmentations: they are made
# in a child process, so a corrupt file, a crash, a hang or a huge buffer cannot take
# the server down. Same arguments, same samples: the seeds are stateless.
@st.cache_data(max_entries=32, show_spinner=False)
def _preview(
    spec_json: str, n: int, seed: int, only: tuple[str, tuple] | None, demo: bool
) -> Preview:
    chosen = None if only is None else (only[0], dict(only[1]))
    samples_from = demo_samples_source(load_spec(spec_json)) if demo else None
    return run_job(
        preview_job,
        args=(spec_json, n, seed, chosen),
        kwargs={"samples_from": samples_from},
        what="reading the samples and the first batch",
        timeout_s=JOB_TIMEOUT_S,
        memory_limit_mb=default_memory_limit_mb(),
    )


def _only_picker() -> tuple[str, tuple] | None:
    names = list(AUGMENTATIONS)
    name = st.selectbox(
        "Augmentation",
        names,
        key="preview.only",
        format_func=lambda n: f"{n} — {AUGMENTATIONS[n].description}",
    )
    params: dict[str, Any] = model_form(param_fields(name), {}, key=f"preview.only.{name}")
    return name, tuple(sorted(params.items(), key=lambda kv: kv[0]))


def _grid(preview: Preview, *, augmented: bool) -> None:
    """Each sample as one image: original and augmented side by side (a full-screen view
    shows the pair), small images enlarged without blur; labels by class name."""
    per_row = PAIRS_PER_ROW if augmented else 2 * PAIRS_PER_ROW
    samples = list(preview.samples)
    for start in range(0, len(samples), per_row):
        cols = st.columns(per_row)
        for col, sample in zip(cols, samples[start : start + per_row], strict=False):
            with col.container(border=True):
                before = preview.label_name(sample.original_label)
                if augmented:
                    label = f"{before} → {preview.label_name(sample.label)}"
                    st.image(pair_image(sample), caption="original · augmented", width="stretch")
                else:
                    label = before
                    st.image(enlarged(sample.original), width="stretch")
                st.caption(
                    f"#{sample.index} · label {label} · "
                    f"{list(sample.augmented_shape)} {sample.augmented_dtype}"
                )


def _batch_view(preview: Preview) -> None:
    st.subheader("A batch of the full pipeline")
    summary = preview.summary
    if summary is None:
        st.error(f"No batch to show: {preview.summary_error}. Fix the design on the Design page.")
        return
    table, chart = st.columns([1, 2])
    table.dataframe(
        [{"figure": k, "value": v} for k, v in summary.rows()], hide_index=True, width="stretch"
    )
    chart.plotly_chart(
        charts.label_distribution(summary.label_counts, title="Label distribution in the batch"),
        key="preview.labels",
        width="stretch",
    )


spec = _state.get_spec()
page_header(
    "Preview",
    f"Pipeline **{spec.name}** · source `{spec.source.type}` · edit it on the Design page.",
)

n_col, seed_col, roll_col, mode_col = st.columns([1, 1, 1, 3], vertical_alignment="bottom")
n = number_setting(n_col, "Samples", key="preview.n", default=8, minimum=1, maximum=32, step=1)
seed = number_setting(seed_col, "Seed", key="preview.seed", default=0, minimum=0, step=1)
roll_col.button(
    "Reroll", icon=":material/casino:", on_click=_reroll, key="preview.reroll", width="stretch"
)
mode = mode_col.radio(
    "Augmentations", MODES, horizontal=True, key=_state.kept("preview.mode", MODES[0])
)
only = _only_picker() if mode == MODES[1] else None
demo = False
if demo_samples_source(spec) is not None:
    demo = (
        st.radio(
            "Samples from",
            SAMPLE_SOURCES,
            horizontal=True,
            key=_state.kept("preview.samples_from", SAMPLE_SOURCES[0]),
            help="A synthetic source is random noise: the demo images show what the "
            "augmentations do to real pictures, at the same size. The batch below is "
            "always the design's own.",
        )
        == SAMPLE_SOURCES[0]
    )
has_maps = any(step.op == "map" for step in spec.steps)
if only is None and not has_maps:
    st.info(
        "This design has no map step, so there is nothing to augment: the samples are "
        "shown as the source yields them. Add augmentations on the Design page, or try "
        "one alone above.",
        icon=":material/info:",
    )

try:
    with st.spinner("Augmenting samples and reading the first batch..."):
        preview = _preview(spec.to_json(), int(n), int(seed), only, demo)
except JobFailed as exc:  # a crash, a hang, the memory ceiling (not cached: tried again)
    preview = Preview(samples_error=exc.reason, summary_error=exc.reason)
if preview.samples_error is not None:
    st.error(f"No preview: {preview.samples_error}")  # each reason names its own fix
else:
    if preview.samples_source:
        st.caption(
            "Samples: the demo images (circles, crosses, squares, stripes, triangles) at the "
            "design's size, through the design's augmentations."
        )
    _grid(preview, augmented=only is not None or has_maps)

_batch_view(preview)
