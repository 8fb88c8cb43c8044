"""Where Pipeline Lab keeps its files (uploads, demo data, the run database).

A path a user gives goes through `resolve_path` (or `glob_files` for a glob
pattern). The command line and the Python API have full access: `{data_dir}`,
`~` and `$VARS` are expanded and any path is allowed. A process that serves
browsers is *confined* (`confine_to_data_roots`, which `app.py` calls): paths
must lie inside the data dir or a root listed in `$PIPELINE_LAB_DATA_ROOTS`,
`~` and `$VARS` are not expanded, and a relative path is relative to the data
dir. Confinement is an environment variable, so every child process the server
spawns is confined too.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from pathlib import Path

from pipeline_core.errors import PipelineLabError

ENV_HOME = "PIPELINE_LAB_HOME"
ENV_CONFINE = "PIPELINE_LAB_CONFINE"
ENV_DATA_ROOTS = "PIPELINE_LAB_DATA_ROOTS"

_GLOB_CHARS = re.compile(r"[*?[]")
# What os.path.expandvars would expand: $name, ${name}. Refused whether set or not,
# so an answer never tells whether a variable exists.
_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})")


class OutsideDataError(PipelineLabError):
    """A confined (browser) session named a path outside the data dir and the allowed roots."""


def data_dir() -> Path:
    """The data directory: `$PIPELINE_LAB_HOME`, else `~/.pipeline_lab`. Created on demand."""
    root = Path(os.environ.get(ENV_HOME) or Path.home() / ".pipeline_lab").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def uploads_dir() -> Path:
    """Directory for files uploaded in the browser."""
    path = data_dir() / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def demo_dir() -> Path:
    """Directory of the generated demo data (images, TFRecord, CSV, npz; see `demo-data`)."""
    return data_dir() / "demo"


# --- confinement ----------------------------------------------------------------


def confine_to_data_roots() -> None:
    """Confine this process and every child it spawns to the data dir and allowed roots.

    The Streamlit app calls it at start: a browser user reaches only the data dir
    (uploads, demo data) and the folders in `$PIPELINE_LAB_DATA_ROOTS`.
    """
    os.environ[ENV_CONFINE] = "1"


def confined() -> bool:
    """Whether user paths are confined (`$PIPELINE_LAB_CONFINE` set and not "0")."""
    return os.environ.get(ENV_CONFINE, "").strip() not in ("", "0")


def data_roots() -> list[Path]:
    """The folders a confined session may read and write: the data dir, then each
    absolute path in `$PIPELINE_LAB_DATA_ROOTS` (os.pathsep-separated), symlinks resolved."""
    listed = os.environ.get(ENV_DATA_ROOTS, "").split(os.pathsep)
    roots = [data_dir(), *(Path(p.strip()) for p in listed if os.path.isabs(p.strip()))]
    return [Path(os.path.realpath(p)) for p in roots]


def is_inside_roots(path: str | os.PathLike[str]) -> bool:
    """Whether the real path of `path` (symlinks and `..` resolved) is inside a root."""
    real = os.path.realpath(path)
    for root in data_roots():
        base = str(root)
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False


def outside_error(given: str, *, what: str = "path", detail: str = "") -> OutsideDataError:
    """The error for a path outside the roots; it names `given` as the user wrote it."""
    extra = os.environ.get(ENV_DATA_ROOTS, "").strip()
    where = "the data dir and the folders the admin allowed" if extra else "the data dir"
    return OutsideDataError(
        f"{what} {given!r} {detail or 'is outside the data dir'}: in the browser, Pipeline Lab "
        f"reads and writes only under {where}. Put the files under the data dir (e.g. "
        "{data_dir}/my-data/...) or upload them on the Design page, or ask the admin to add "
        f"the folder to {ENV_DATA_ROOTS}; the command line (python -m pipeline_core) has "
        "full access."
    )


def _confined_path(text: str, *, what: str) -> Path:
    """`text` with `{data_dir}` replaced and a relative path joined to the data dir;
    `~` and `$VARS` are refused, not expanded. Not yet checked against the roots."""
    if text.lstrip().startswith("~") or _VARIABLE.search(text):
        raise outside_error(
            text,
            what=what,
            detail="uses ~ or $VARS, which are not expanded here, so it is outside the data dir",
        )
    expanded = text.replace("{data_dir}", str(data_dir()))
    return Path(os.path.join(data_dir(), expanded))  # joining an absolute path keeps it


def resolve_path(path: str, *, what: str = "path") -> Path:
    """A user-given path: the `{data_dir}` placeholder, `~` and environment variables expanded.

    `"{data_dir}/demo/images"` names a folder inside the data dir, so example
    specs work on any machine. When confined (a browser session), `~` and `$VARS`
    are not expanded, a relative path is relative to the data dir, and the path's
    real location must be inside the data dir or an allowed root.

    Raises:
        OutsideDataError: confined, and the path is outside every root (the message
            names the path as given, `what` says what it is).
    """
    if not confined():
        text = path.replace("{data_dir}", str(data_dir()))
        return Path(os.path.expandvars(os.path.expanduser(text)))
    resolved = _confined_path(path, what=what)
    if not is_inside_roots(resolved):
        raise outside_error(path, what=what)
    return resolved


def _glob_prefix(pattern: str) -> str:
    """The part of a glob pattern before its first component with a wildcard."""
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if _GLOB_CHARS.search(part):
            return str(Path(*parts[:i])) if i else "."
    return pattern


def glob_files(pattern: str, *, what: str = "files") -> tuple[str, list[str]]:
    """The resolved pattern and the sorted files it matches, hidden files included (as
    `tf.io.gfile.glob` matches them). A plain path is a pattern matching itself.

    When confined, the pattern's fixed prefix, every folder the match walks into and
    every match (symlinks and `..` resolved) must be inside a root; each folder is
    checked before it is listed, so nothing outside is listed or opened.

    Raises:
        OutsideDataError: confined, and the pattern or a match leads outside the roots.
    """
    if not confined():
        resolved = str(resolve_path(pattern))
        matches = glob.glob(resolved, include_hidden=True)
    else:
        resolved = str(_confined_path(pattern, what=what))
        matches = _confined_glob(resolved, given=pattern, what=what)
    return resolved, sorted(m for m in matches if os.path.isfile(m))


def _confined_glob(pattern: str, *, given: str, what: str) -> list[str]:
    """`glob.glob(pattern, include_hidden=True)`, walked one component at a time so that
    a folder is checked against the roots before it is listed."""
    prefix = _glob_prefix(pattern)
    if not is_inside_roots(prefix):
        raise outside_error(given, what=what)
    rest = Path(pattern).parts[len(Path(prefix).parts) :] if prefix != pattern else ()
    found = [prefix] if os.path.lexists(prefix) else []
    for part in rest:
        below: list[str] = []
        for folder in found:
            if not is_inside_roots(folder):
                raise _leads_out(given, what)
            if _GLOB_CHARS.search(part):
                try:
                    names = os.listdir(folder)
                except OSError:  # not a folder, or unreadable: no match below it
                    continue
                below += [os.path.join(folder, n) for n in names if fnmatch.fnmatchcase(n, part)]
            elif os.path.lexists(os.path.join(folder, part)):
                below.append(os.path.join(folder, part))
        found = below
    for match in found:
        if not is_inside_roots(match):
            raise _leads_out(given, what)
    return found


def _leads_out(given: str, what: str) -> OutsideDataError:
    # The match is not named: it would tell what lies outside.
    return outside_error(
        given,
        what=what,
        detail="leads outside the data dir through a symlink or ..",
    )
