"""Find the bottleneck and fix it: stage analysis, machine limit, tuning, advice, memory.

One concept per module:

- `examples`: how many examples an element holds (batched or not) — counted here only;
- `measure`: in-process throughput of a dataset or spec (examples/s), as a consumer
  pulls it or drained inside TensorFlow;
- `stages`: throughput of each prefix (drained) and the cost each step adds, then the
  consumer's own cost;
- `machine`: one-thread copies on every core, and the consumer, against the measured rate;
- `space`: the tuner's knobs for a spec and `realize(settings) -> spec`;
- `search`: adaptive coordinate descent and exhaustive grid over knobs;
- `tuner`: `tune(spec)` — search with measurements, then the best few and the baseline
  re-measured alternately; the story it tells;
- `recommend`: rules over measured facts, each fix measured before it is offered;
- `agreement`: one pipeline, one number — the figures of stage analysis, tuner,
  recommendations and a profile run side by side, and why they differ;
- `memory`: bytes held by cache, shuffle, prefetch; the memory guard;
- `trace`: a TensorFlow profiler trace for TensorBoard;
- `jobs`: each of the above as a job in a child process (`pipeline_core.isolate`),
  with progress, cancel and a timeout — what the dashboard runs.
"""

from pipeline_core.analysis.agreement import (
    Agreement,
    Figure,
    agreement,
    latest_profile_run,
    recommendation_checks,
    seeds_of,
)
from pipeline_core.analysis.examples import examples_in, is_batched
from pipeline_core.analysis.jobs import (
    JOBS,
    Progress,
    StageAnalysis,
    run_analysis,
    start_analysis,
)
from pipeline_core.analysis.machine import (
    MachineLimit,
    copies_dataset,
    machine_limit,
    single_core_spec,
)
from pipeline_core.analysis.measure import (
    WINDOW_S,
    MeasureError,
    Throughput,
    measure_dataset,
    measure_peak_rss,
    measure_spec,
)
from pipeline_core.analysis.memory import (
    MemoryEstimate,
    MemoryPart,
    MemoryVerdict,
    check_memory,
    format_bytes,
    memory_estimate,
    memory_estimate_job,
    memory_verdict,
)
from pipeline_core.analysis.recommend import RULES, Facts, Recommendation, recommend
from pipeline_core.analysis.search import SearchResult, Trial, coordinate_search, grid_search
from pipeline_core.analysis.space import Knob, SearchSpace, realize, search_space
from pipeline_core.analysis.stages import Stage, StageReport, analyze_stages, format_stage_table
from pipeline_core.analysis.trace import TraceError, TraceResult, capture_trace
from pipeline_core.analysis.tuner import Remeasure, TuneError, TuneResult, tune

__all__ = [
    "JOBS",
    "RULES",
    "WINDOW_S",
    "Agreement",
    "Facts",
    "Figure",
    "Knob",
    "MachineLimit",
    "MeasureError",
    "MemoryEstimate",
    "MemoryPart",
    "MemoryVerdict",
    "Progress",
    "Recommendation",
    "Remeasure",
    "SearchResult",
    "SearchSpace",
    "StageAnalysis",
    "Stage",
    "StageReport",
    "Throughput",
    "TraceError",
    "TraceResult",
    "Trial",
    "TuneError",
    "TuneResult",
    "agreement",
    "analyze_stages",
    "capture_trace",
    "check_memory",
    "coordinate_search",
    "copies_dataset",
    "examples_in",
    "format_bytes",
    "format_stage_table",
    "grid_search",
    "is_batched",
    "latest_profile_run",
    "machine_limit",
    "measure_dataset",
    "measure_peak_rss",
    "measure_spec",
    "memory_estimate",
    "memory_estimate_job",
    "memory_verdict",
    "realize",
    "recommend",
    "recommendation_checks",
    "run_analysis",
    "search_space",
    "seeds_of",
    "single_core_spec",
    "start_analysis",
    "tune",
]
