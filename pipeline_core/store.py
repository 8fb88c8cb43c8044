"""Run history in SQLite: runs with spec, environment, summary and time series.

The default file is `$PIPELINE_LAB_DB`, else `data_dir()/runs.sqlite`. The
schema is versioned (`schema_version` table) and upgraded by ordered
migrations; the database runs in WAL mode with a busy timeout, so several
processes can write at once. A run whose owning process died while it was
"running" is marked "interrupted" the next time the store is opened.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from pipeline_core.errors import PipelineLabError
from pipeline_core.paths import data_dir

ENV_DB = "PIPELINE_LAB_DB"
STATUSES = ("running", "completed", "stopped", "failed", "interrupted")
RUN_FILE_FORMAT = "pipeline-lab-run"
RUN_FILE_VERSION = 1
BATCH_COLUMNS = ("index", "t_s", "wait_ms", "examples", "step_ms")
_BUSY_MS = 15_000
_CHUNK = 2_000

MIGRATIONS: tuple[str, ...] = (
    # 1: runs with their series.
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        created TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        spec_json TEXT,
        environment_json TEXT NOT NULL DEFAULT '{}',
        summary_json TEXT NOT NULL DEFAULT '{}',
        settings_json TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE batches (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        t_s REAL NOT NULL,
        wait_ms REAL NOT NULL,
        examples INTEGER NOT NULL,
        step_ms REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE readings (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        t_s REAL NOT NULL,
        data_json TEXT NOT NULL
    );
    CREATE INDEX readings_by_run ON readings (run_id, t_s);
    """,
    # 2: the owner of a running run, so a dead owner's run can be marked interrupted.
    """
    ALTER TABLE runs ADD COLUMN owner_pid INTEGER;
    ALTER TABLE runs ADD COLUMN owner_started REAL;
    ALTER TABLE runs ADD COLUMN owner_host TEXT;
    ALTER TABLE runs ADD COLUMN updated TEXT;
    CREATE INDEX runs_by_created ON runs (created);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(PipelineLabError):
    """A run store problem the user can fix (unknown id, bad import file, newer schema)."""


@dataclass(frozen=True)
class RunInfo:
    """One line of `list_runs()`: identity and key figures.

    `held_by_pipeline_mb` is the private memory peak above TensorFlow's own
    (None for runs stored before memory kinds were measured).
    """

    id: int
    name: str
    created: str
    status: str
    error: str | None
    batches: int | None
    examples_per_s: float | None
    latency_p50_ms: float | None
    input_bound_percent: float | None
    held_by_pipeline_mb: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # how it was run (`RunSettings`)


@dataclass(frozen=True)
class RunRecord:
    """A stored run with its series.

    `batches` maps column name (`BATCH_COLUMNS`) to a list, and `readings` is a
    list of flat dicts: both go straight into `pandas.DataFrame(...)`. Summaries
    and readings are JSON, so figures added later (memory by kind) need no
    migration: a run stored before them simply lacks the keys (read as unknown).
    """

    id: int
    name: str
    created: str
    status: str
    error: str | None
    spec: dict[str, Any] | None
    environment: dict[str, Any]
    summary: dict[str, Any]
    settings: dict[str, Any]
    batches: dict[str, list]
    readings: list[dict[str, Any]]


def default_path() -> Path:
    """`$PIPELINE_LAB_DB`, else `data_dir()/runs.sqlite`."""
    env = os.environ.get(ENV_DB)
    return Path(env).expanduser() if env else data_dir() / "runs.sqlite"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _owner() -> tuple[int, float, str]:
    me = psutil.Process()
    return me.pid, me.create_time(), socket.gethostname()


def _alive(pid: int | None, started: float | None) -> bool:
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.Error:
        return False


class RunStore:
    """The run database. Every method opens a short connection, so one store is thread-safe.

    Args:
        path: the SQLite file (created with its folder); default `default_path()`.

    Raises:
        StoreError: the file was written by a newer Pipeline Lab, or is not a database.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._migrate()
            self._mark_interrupted()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} is not a usable run database ({exc}); "
                "pass another file with --db or $PIPELINE_LAB_DB"
            ) from None

    # --- connections and schema ------------------------------------------------

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=_BUSY_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.row_factory = sqlite3.Row
            if not write:
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def schema_version(self) -> int:
        """The schema version of the file (0 for a new file)."""
        with self._connect() as conn:
            return _read_version(conn)

    def _migrate(self) -> None:
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode = WAL")
        with self._connect(write=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = _read_version(conn)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this Pipeline Lab "
                    f"reads ({SCHEMA_VERSION}); upgrade Pipeline Lab or use another file with --db"
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _statements(MIGRATIONS[number - 1]):
                    conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))

    def _mark_interrupted(self) -> None:
        host = socket.gethostname()
        with self._connect(write=True) as conn:
            rows = conn.execute(
                "SELECT id, owner_pid, owner_started, owner_host FROM runs WHERE status='running'"
            ).fetchall()
            for row in rows:
                if row["owner_host"] not in (None, host):
                    continue
                if not _alive(row["owner_pid"], row["owner_started"]):
                    conn.execute(
                        "UPDATE runs SET status='interrupted', error=?, updated=? WHERE id=?",
                        (
                            f"interrupted: the process running it (pid {row['owner_pid']}) "
                            "ended before the run finished",
                            _now(),
                            row["id"],
                        ),
                    )

    # --- writing a run as it goes ----------------------------------------------

    def create_run(
        self,
        *,
        name: str,
        spec: dict[str, Any] | None = None,
        environment: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> int:
        """Insert a "running" run owned by this process; returns its id."""
        pid, started, host = _owner()
        now = _now()
        with self._connect(write=True) as conn:
            cursor = conn.execute(
                "INSERT INTO runs (name, created, updated, status, spec_json, environment_json,"
                " settings_json, owner_pid, owner_started, owner_host)"
                " VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    now,
                    now,
                    json.dumps(spec) if spec is not None else None,
                    json.dumps(environment or {}),
                    json.dumps(settings or {}),
                    pid,
                    started,
                    host,
                ),
            )
            return int(cursor.lastrowid)

    def set_environment(self, run_id: int, environment: dict[str, Any]) -> None:
        """Record the environment (known once the child process reports it)."""
        with self._connect(write=True) as conn:
            conn.execute(
                "UPDATE runs SET environment_json=?, updated=? WHERE id=?",
                (json.dumps(environment), _now(), run_id),
            )

    def append_batches(self, run_id: int, rows: Iterable[tuple]) -> None:
        """Append `(index, t_s, wait_ms, examples, step_ms)` rows."""
        rows = list(rows)
        for start in range(0, len(rows), _CHUNK):
            with self._connect(write=True) as conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO batches (run_id, idx, t_s, wait_ms, examples, step_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(run_id, *row) for row in rows[start : start + _CHUNK]],
                )

    def append_readings(self, run_id: int, readings: Iterable[dict[str, Any]]) -> None:
        """Append flat reading dicts (each with a `t` in seconds)."""
        rows = [(run_id, float(r.get("t", 0.0)), json.dumps(r)) for r in readings]
        if rows:
            with self._connect(write=True) as conn:
                conn.executemany(
                    "INSERT INTO readings (run_id, t_s, data_json) VALUES (?, ?, ?)", rows
                )

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        error: str | None = None,
        summary: dict[str, Any] | None = None,
    ) -> None:
        """Set the final status, reason and summary."""
        if status not in STATUSES:
            raise StoreError(f"unknown run status {status!r}; use one of {', '.join(STATUSES)}")
        with self._connect(write=True) as conn:
            conn.execute(
                "UPDATE runs SET status=?, error=?, summary_json=?, updated=? WHERE id=?",
                (status, error, json.dumps(summary or {}), _now(), run_id),
            )

    # --- reading and managing runs ----------------------------------------------

    def list_runs(self) -> list[RunInfo]:
        """All runs, newest first, with key figures from their summaries."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, name, created, status, error, summary_json, settings_json FROM runs"
                " ORDER BY created DESC, id DESC"
            ).fetchall()
        return [_info(row) for row in rows]

    def get_run(self, run_id: int) -> RunRecord:
        """The run with its series.

        Raises:
            StoreError: there is no run with this id.
        """
        self._check_id(run_id)
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise self._missing(run_id)
            batch_rows = conn.execute(
                "SELECT idx, t_s, wait_ms, examples, step_ms FROM batches"
                " WHERE run_id=? ORDER BY idx",
                (run_id,),
            ).fetchall()
            reading_rows = conn.execute(
                "SELECT data_json FROM readings WHERE run_id=? ORDER BY t_s, rowid", (run_id,)
            ).fetchall()
        columns = {name: [r[i] for r in batch_rows] for i, name in enumerate(BATCH_COLUMNS)}
        return RunRecord(
            id=row["id"],
            name=row["name"],
            created=row["created"],
            status=row["status"],
            error=row["error"],
            spec=json.loads(row["spec_json"]) if row["spec_json"] else None,
            environment=json.loads(row["environment_json"] or "{}"),
            summary=json.loads(row["summary_json"] or "{}"),
            settings=json.loads(row["settings_json"] or "{}"),
            batches=columns,
            readings=[json.loads(r[0]) for r in reading_rows],
        )

    def rename(self, run_id: int, name: str) -> None:
        """Give a run a new name."""
        name = name.strip()
        if not name:
            raise StoreError("a run name cannot be empty; pass some text")
        self._check_id(run_id)
        with self._connect(write=True) as conn:
            if conn.execute("UPDATE runs SET name=? WHERE id=?", (name, run_id)).rowcount == 0:
                raise self._missing(run_id)

    def delete(self, run_id: int) -> None:
        """Delete a run and its series."""
        self._check_id(run_id)
        with self._connect(write=True) as conn:
            if conn.execute("DELETE FROM runs WHERE id=?", (run_id,)).rowcount == 0:
                raise self._missing(run_id)

    def _check_id(self, run_id: int) -> None:
        """An id SQLite cannot hold (beyond 64 bits) names no run."""
        if not isinstance(run_id, int) or not -(2**63) <= run_id < 2**63:
            raise self._missing(run_id)

    def _missing(self, run_id: int) -> StoreError:
        return StoreError(
            f"no run with id {str(run_id)[:24]} in {self.path}; "
            "`python -m pipeline_core runs list` "
            "shows the ids"
        )

    # --- a run as a file: dump and import ------------------------------------------

    def dump_json(self, run_id: int) -> str:
        """The run as self-describing JSON (readable by `import_json`)."""
        rec = self.get_run(run_id)
        return json.dumps(
            {
                "format": RUN_FILE_FORMAT,
                "version": RUN_FILE_VERSION,
                "run": {
                    "name": rec.name,
                    "created": rec.created,
                    "status": rec.status,
                    "error": rec.error,
                    "spec": rec.spec,
                    "environment": rec.environment,
                    "summary": rec.summary,
                    "settings": rec.settings,
                },
                "batches": rec.batches,
                "readings": rec.readings,
            },
            indent=1,
        )

    def dump_csv(self, run_id: int) -> str:
        """Per-batch series as CSV, preceded by `# key: value` summary lines.

        `pandas.read_csv(io.StringIO(text), comment="#")` reads the series.
        """
        rec = self.get_run(run_id)
        out = io.StringIO()
        out.write(f"# run: {rec.id} {rec.name}\n# status: {rec.status}\n")
        if rec.error:
            out.write(f"# error: {rec.error}\n")
        for key, value in rec.summary.items():
            out.write(f"# {key}: {json.dumps(value)}\n")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(BATCH_COLUMNS)
        writer.writerows(zip(*(rec.batches[c] for c in BATCH_COLUMNS), strict=True))
        return out.getvalue()

    def import_json(self, text: str | bytes) -> int:
        """Add a run written by `dump_json`; returns its new id.

        The whole file is checked first and the run goes in with its batches and
        readings in one transaction: a bad file adds nothing.

        Raises:
            StoreError: the text is not a run file of Pipeline Lab (`dump_json`), or a
                figure in it is not what a run holds (the message names it).
        """
        data = _parse_run_file(text)
        run = data["run"]
        status = run.get("status", "completed")
        if status not in STATUSES or status == "running":
            status = "interrupted"
        batches = data.get("batches") or {}
        rows = list(zip(*(batches.get(c, []) for c in BATCH_COLUMNS), strict=True))
        readings = data.get("readings") or []
        with self._connect(write=True) as conn:
            cursor = conn.execute(
                "INSERT INTO runs (name, created, updated, status, error, spec_json,"
                " environment_json, summary_json, settings_json) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    str(run.get("name") or "imported run")[:200],
                    str(run.get("created") or _now()),
                    _now(),
                    status,
                    None if run.get("error") is None else str(run["error"]),
                    json.dumps(run["spec"]) if run.get("spec") is not None else None,
                    json.dumps(run.get("environment") or {}),
                    json.dumps(run.get("summary") or {}),
                    json.dumps(run.get("settings") or {}),
                ),
            )
            run_id = int(cursor.lastrowid)
            conn.executemany(
                "INSERT OR REPLACE INTO batches (run_id, idx, t_s, wait_ms, examples, step_ms)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, *row) for row in rows],
            )
            conn.executemany(
                "INSERT INTO readings (run_id, t_s, data_json) VALUES (?, ?, ?)",
                [(run_id, float(r.get("t", 0.0)), json.dumps(r)) for r in readings],
            )
        return run_id


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _read_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _number(value: Any) -> float | None:
    """A stored figure, or None when it is missing or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _info(row: sqlite3.Row) -> RunInfo:
    """One row of the run list; a stored summary that cannot be read (written by hand,
    an older bug) shows as unknown figures and says so, instead of failing the list."""
    error = row["error"]
    try:
        summary = json.loads(row["summary_json"] or "{}")
    except (ValueError, RecursionError):
        summary = None
    if not isinstance(summary, dict):
        summary = {}
        error = f"{error + '; ' if error else ''}its stored summary cannot be read"
    latency = summary.get("latency_ms")
    latency = latency if isinstance(latency, dict) else {}
    batches = _number(summary.get("batches"))
    return RunInfo(
        id=row["id"],
        name=row["name"],
        created=row["created"],
        status=row["status"],
        error=error,
        batches=None if batches is None else int(batches),
        examples_per_s=_number(summary.get("examples_per_s")),
        latency_p50_ms=_number(latency.get("p50")),
        input_bound_percent=_number(summary.get("input_bound_percent")),
        held_by_pipeline_mb=_number(summary.get("held_by_pipeline_mb")),
        settings=_settings(row["settings_json"]),
    )


def _settings(text: str | None) -> dict[str, Any]:
    """Stored run settings, or none when they cannot be read (the list goes on)."""
    try:
        settings = json.loads(text or "{}")
    except (ValueError, RecursionError):
        return {}
    return settings if isinstance(settings, dict) else {}


def _parse_run_file(text: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(
            f"the import file is not valid JSON ({exc}); export a run with "
            "`runs export ID --format json`"
        ) from None
    if not isinstance(data, dict) or data.get("format") != RUN_FILE_FORMAT:
        raise StoreError(
            f"the import file is not a Pipeline Lab run export (its `format` should be "
            f"{RUN_FILE_FORMAT!r}); export a run with `runs export ID --format json`"
        )
    if data.get("version") != RUN_FILE_VERSION:
        raise StoreError(
            f"the import file has export version {data.get('version')!r}; this Pipeline Lab "
            f"reads version {RUN_FILE_VERSION}"
        )
    if not isinstance(data.get("run"), dict):
        raise StoreError("the import file has no `run` object; export the run again")
    _check_run(data["run"])
    batches = data.get("batches") or {}
    if not isinstance(batches, dict) or not all(
        isinstance(batches.get(c, []), list) for c in BATCH_COLUMNS
    ):
        raise StoreError(
            f"the import file's `batches` should map {', '.join(BATCH_COLUMNS)} to lists; "
            "export the run again"
        )
    lengths = {len(batches.get(c, [])) for c in BATCH_COLUMNS}
    if len(lengths) > 1:
        raise StoreError(
            f"the import file's batch columns {', '.join(BATCH_COLUMNS)} differ in length; "
            "export the run again"
        )
    for column in BATCH_COLUMNS:
        bad = next(
            (v for v in batches.get(column, []) if _number(v) is None and v is not None), None
        )
        if bad is not None:
            raise StoreError(
                f"the import file's batch column {column!r} holds {_echo(bad)}, not a number; "
                "export the run again"
            )
    readings = data.get("readings") or []
    if not isinstance(readings, list) or not all(
        isinstance(r, dict) and _number(r.get("t", 0.0)) is not None for r in readings
    ):
        raise StoreError(
            "the import file's `readings` should be a list of objects with a numeric `t`; "
            "export the run again"
        )
    return data


# Figures of a run's summary that the run list and comparisons read as numbers.
_SUMMARY_NUMBERS = ("batches", "examples", "examples_per_s", "input_bound_percent",
                    "held_by_pipeline_mb", "elapsed_s", "first_batch_s")  # fmt: skip


def _echo(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _check_run(run: dict[str, Any]) -> None:
    """The `run` object of an import file holds what a stored run holds (StoreError if not)."""
    for key in ("spec", "environment", "summary", "settings"):
        value = run.get(key)
        if value is not None and not isinstance(value, dict):
            raise StoreError(
                f"the import file's run.{key} should be an object, not {_echo(value)}; "
                "export the run again"
            )
    for key in ("name", "created", "error"):
        value = run.get(key)
        if value is not None and not isinstance(value, str):
            raise StoreError(
                f"the import file's run.{key} should be text, not {_echo(value)}; "
                "export the run again"
            )
    created = run.get("created")
    if created is not None:
        try:
            datetime.fromisoformat(created)
        except ValueError:
            raise StoreError(
                f"the import file's run.created should be an ISO time, not {_echo(created)}; "
                "export the run again"
            ) from None
    summary = run.get("summary") or {}
    for key in _SUMMARY_NUMBERS:
        value = summary.get(key)
        if value is not None and _number(value) is None:
            raise StoreError(
                f"the import file's run.summary.{key} should be a number, not {_echo(value)}; "
                "export the run again"
            )
    latency = summary.get("latency_ms")
    if latency is not None:
        if not isinstance(latency, dict):
            raise StoreError(
                f"the import file's run.summary.latency_ms should be an object of numbers, not "
                f"{_echo(latency)}; export the run again"
            )
        for key, value in latency.items():
            if value is not None and _number(value) is None:
                raise StoreError(
                    f"the import file's run.summary.latency_ms.{key} should be a number, not "
                    f"{_echo(value)}; export the run again"
                )
