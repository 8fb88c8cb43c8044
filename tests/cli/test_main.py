"""`python -m pipeline_core`: validate, export, demo-data, the command list, errors vs bugs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_core import cli
from pipeline_core.errors import PipelineLabError
from pipeline_core.spec import default_spec
from tests import REPO

BAD_SPEC = {"source": {"type": "synthetic"}, "steps": [{"op": "batch", "batch_size": 0}]}


@pytest.fixture
def good(tmp_path) -> Path:
    path = tmp_path / "good.json"
    path.write_text(default_spec().to_json(), encoding="utf-8")
    return path


@pytest.fixture
def bad(tmp_path) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(BAD_SPEC), encoding="utf-8")
    return path


def test_validate_ok(good, capsys):
    assert cli.main(["validate", str(good)]) == 0
    assert (
        "valid (synthetic source, 4 steps: shuffle, map, batch, prefetch)"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (json.dumps(BAD_SPEC), "steps[0].batch_size: must be >= 1, received 0"),
        ("{not json", "not valid JSON"),
        (json.dumps({"source": {"type": "nope"}}), "unknown source type"),
    ],
)
def test_validate_bad_exits_2_with_message(content, message, tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text(content, encoding="utf-8")
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_spec_file(tmp_path, capsys):
    assert cli.main(["validate", str(tmp_path / "none.json")]) == 2
    assert "cannot read spec file" in capsys.readouterr().err


def test_bad_spec_in_a_subprocess_has_no_traceback(bad):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_core", "validate", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert "steps[0].batch_size: must be >= 1, received 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_export_to_file_and_stdout(good, tmp_path, capsys):
    out = tmp_path / "pipeline.py"
    assert cli.main(["export", str(good), "-o", str(out)]) == 0
    code = out.read_text(encoding="utf-8")
    assert "def make_dataset():" in code
    compile(code, str(out), "exec")
    assert cli.main(["export", str(good)]) == 0
    assert capsys.readouterr().out == code


def test_export_source_problem_exits_2(tmp_path, capsys):
    spec = {"source": {"type": "npy", "features_path": str(tmp_path / "x.npy")}}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    assert cli.main(["export", str(path)]) == 2
    assert "source (npy): features_path" in capsys.readouterr().err


def test_demo_data(tmp_path, capsys):
    assert cli.main(["demo-data", str(tmp_path / "demo"), "--per-class", "2", "--size", "16"]) == 0
    images = sorted((tmp_path / "demo" / "images").rglob("*.*"))
    assert len(images) == 10
    assert (tmp_path / "demo" / "npz" / "shapes.npz").is_file()
    assert (tmp_path / "demo" / "csv" / "shapes.csv").read_text().count("\n") == 11
    assert cli.main(["demo-data", str(tmp_path / "again"), "--per-class", "2", "--size", "16"]) == 0
    again = sorted((tmp_path / "again" / "images").rglob("*.*"))
    assert [p.read_bytes() for p in images] == [p.read_bytes() for p in again]  # deterministic
    assert cli.main(["demo-data", str(tmp_path / "x"), "--size", "4"]) == 2
    assert "size must be >= 16" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["spec.json", "spec.json/demo"])
def test_demo_data_into_a_file_names_the_fix(target, tmp_path, capsys):
    (tmp_path / "spec.json").write_text("{}")
    assert cli.main(["demo-data", str(tmp_path / target), "--per-class", "1"]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder; give a folder path" in err
    assert "Errno" not in err
    assert (tmp_path / "spec.json").read_text() == "{}"


def test_write_demo_images_matches_the_full_set(tmp_path):
    from pipeline_core.demo_data import write_demo_data, write_demo_images

    folder = write_demo_images(tmp_path / "only", per_class=1, size=16)
    write_demo_data(tmp_path / "full", per_class=1, size=16)
    names = sorted(p.relative_to(folder) for p in folder.rglob("*.*"))
    assert [str(n.parent) for n in names] == ["circle", "cross", "square", "stripes", "triangle"]
    for name in names:
        assert (folder / name).read_bytes() == (tmp_path / "full" / "images" / name).read_bytes()


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_commands_are_one_static_list():
    parser = cli.make_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    expected = [
        *("validate", "export", "demo-data", "profile", "scale", "runs", "analyze", "tune"),
        "serve",
    ]
    assert list(commands) == expected


def _command(monkeypatch, error: BaseException) -> None:
    """Add a command `boom` that raises `error`."""

    def register(subparsers):
        def run(args):
            raise error

        subparsers.add_parser("boom").set_defaults(handler=run)

    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, register))


def test_a_user_mistake_exits_2_with_its_message(monkeypatch, capsys):
    _command(monkeypatch, PipelineLabError("boom: the fix is to stop"))
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err == "error: boom: the fix is to stop\n"


@pytest.mark.parametrize(
    "error", [ValueError("operands could not be broadcast together"), KeyError("x")]
)
def test_any_other_error_is_a_bug_with_its_traceback_and_exit_1(error, monkeypatch, capsys):
    _command(monkeypatch, error)
    assert cli.main(["boom"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and type(error).__name__ in err
    assert err.rstrip().endswith(
        "error: this is a bug in Pipeline Lab, not a problem with your input; "
        "please report it with the traceback above"
    )


def test_an_unwritable_output_names_the_path_and_the_fix(good, tmp_path, capsys):
    out = tmp_path / "no such folder" / "pipeline.py"
    assert cli.main(["export", str(good), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot write {str(out)!r}" in err and "pick a writable path" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--batches", "0", "must be >= 1, received 0"), ("--seconds", "0", "must be > 0, received 0")],
)
def test_counts_and_times_must_be_positive(option, value, message, good, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["profile", str(good), option, value])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
