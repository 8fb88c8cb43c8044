"""Where Pipeline Lab keeps its files (uploads, demo data, the run database)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "PIPELINE_LAB_HOME"


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


def resolve_path(path: str) -> Path:
    """Expand a user-given path: `{data_dir}` placeholder, `~` and environment variables.

    `"{data_dir}/demo/images"` names a folder inside the data dir, so example
    specs work on any machine.
    """
    text = path.replace("{data_dir}", str(data_dir()))
    return Path(os.path.expandvars(os.path.expanduser(text)))
