"""Find the bottleneck and fix it: stage analysis, machine limit, tuning, advice, memory.

One concept per module:

- `measure`: in-process throughput of a dataset or spec (examples/s);
- `stages`: throughput of each prefix and the cost each step adds;
- `machine`: single-core rate × cores against the measured rate;
- `space`: the tuner's knobs for a spec and `realize(settings) -> spec`;
- `search`: adaptive coordinate descent and exhaustive grid over knobs;
- `tuner`: `tune(spec)` — search with measurements, re-measured best vs baseline;
- `recommend`: rules over measured facts, each fix measured before it is offered;
- `memory`: bytes held by cache, shuffle, prefetch; the memory guard;
- `trace`: a TensorFlow profiler trace for TensorBoard;
- `jobs`: each of the above as a job in a child process (`pipeline_core.isolate`),
  with progress, cancel and a timeout — what the dashboard runs.
"""

from pipeline_core.analysis.jobs import (
    JOBS,
    Progress,
    StageAnalysis,
    run_analysis,
    start_analysis,
)
from pipeline_core.analysis.machine import MachineLimit, machine_limit, single_core_spec
from pipeline_core.analysis.measure import (
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
)
from pipeline_core.analysis.recommend import RULES, Facts, Recommendation, recommend
from pipeline_core.analysis.search import SearchResult, Trial, coordinate_search, grid_search
from pipeline_core.analysis.space import Knob, SearchSpace, realize, search_space
from pipeline_core.analysis.stages import Stage, StageReport, analyze_stages, format_stage_table
from pipeline_core.analysis.trace import TraceError, TraceResult, capture_trace
from pipeline_core.analysis.tuner import TuneError, TuneResult, tune

__all__ = [
    "JOBS",
    "RULES",
    "Facts",
    "Knob",
    "MachineLimit",
    "MeasureError",
    "MemoryEstimate",
    "MemoryPart",
    "MemoryVerdict",
    "Progress",
    "Recommendation",
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
    "analyze_stages",
    "capture_trace",
    "check_memory",
    "coordinate_search",
    "format_bytes",
    "format_stage_table",
    "grid_search",
    "machine_limit",
    "measure_dataset",
    "measure_peak_rss",
    "measure_spec",
    "memory_estimate",
    "realize",
    "recommend",
    "run_analysis",
    "search_space",
    "single_core_spec",
    "start_analysis",
    "tune",
]
