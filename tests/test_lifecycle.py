"""Every command goes through one lifecycle: a user error is one line on stderr and exit status 2, and a Hydra
command's run directory records in ``status.json`` how the run ended (failed with its error, or finished)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.processes import run_side_by_side
from mtfcdd.run.status import read_status

HYDRA_COMMANDS = {
    # command: (arguments with a bad input, what the error line must name); a command's own config checks run
    # before its task (evaluate, export: the checkpoint is never opened)
    "train": (["alpha=0.3", "logger=none"], "alpha=0.3"),
    "evaluate": (["ckpt_path={tmp}/nope.ckpt", "inference.engine=tensorrt"], "inference.engine='tensorrt'"),
    "predict": (["ckpt_path={tmp}/nope.ckpt", "input={tmp}/no-such-folder"], "no-such-folder"),
    "export": (["ckpt_path={tmp}/nope.ckpt", "format=tflite"], "format='tflite'"),
    "benchmark": (["run=[eager,tensorrt]"], "tensorrt"),
}
ARGPARSE_COMMANDS = {
    "balanced_epoch": (["--alpha", "0.2", "--data-root", "{tmp}/absent"], "absent"),
    "report": (["{tmp}/nowhere"], "nowhere"),
}


def _run(command: str, arguments: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    argv = [argument.format(tmp=tmp_path) for argument in arguments]
    return subprocess.run(
        [sys.executable, "-m", f"mtfcdd.{command}", *argv], capture_output=True, text=True, timeout=300
    )


def _assert_one_error_line(proc: subprocess.CompletedProcess, named: str) -> str:
    """Exit status 2, no traceback, and exactly one ``error:`` line on stderr, naming ``named``; returns it."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert named in line
    return line.split("error: ", 1)[1]


@pytest.mark.parametrize("command", sorted(HYDRA_COMMANDS))
def test_a_hydra_command_reports_a_bad_input_in_one_line_and_in_status_json(tmp_path, command):
    arguments, named = HYDRA_COMMANDS[command]
    run_dir = tmp_path / "run"
    proc = _run(command, [*arguments, f"hydra.run.dir={run_dir}"], tmp_path)
    message = _assert_one_error_line(proc, named)
    assert proc.stderr.splitlines()[-1] == f"error: {message}"  # the last word, after any warning
    status = read_status(run_dir)
    assert status["state"] == "failed" and status["error"].endswith(f": {message}")
    assert not list(run_dir.rglob("*.ckpt")) and not list(run_dir.rglob("*.onnx"))


def test_a_required_key_left_unset_is_named_in_one_line(tmp_path):
    """``ckpt_path: ???`` (and predict's ``input``) unset on the command line: the key named, no traceback (the
    four commands run side by side)."""
    required = {"evaluate": "ckpt_path", "export": "ckpt_path", "predict": "ckpt_path, input", "serve": "ckpt_path"}
    done = run_side_by_side({command: [f"hydra.run.dir={tmp_path / command}"] for command in required})
    for command, proc in done.items():
        message = _assert_one_error_line(proc, f"{required[command]} " + ("is" if command != "predict" else "are"))
        assert f"python -m mtfcdd.{command} ckpt_path=..." in message
        assert read_status(tmp_path / command)["state"] == "failed"


@pytest.mark.parametrize("command", sorted(ARGPARSE_COMMANDS))
def test_an_argparse_command_reports_a_bad_input_in_one_line(tmp_path, command):
    arguments, named = ARGPARSE_COMMANDS[command]
    _assert_one_error_line(_run(command, arguments, tmp_path), named)


def test_a_successful_command_records_finished(tmp_path):
    run_dir = tmp_path / "run"
    proc = _run(
        "benchmark",
        [
            "model/backbone=efficientnet_lite0",
            "model.backbone.pretrained=false",
            "model.head_width=8",
            "data.image_size=32",
            "run=[eager]",
            "batch_sizes=[1]",
            "rounds=1",
            "warmup=0",
            "deviation_images=2",
            "calibration_images=2",
            "int8_images.source=skimage",
            "gpu=false",
            f"hydra.run.dir={run_dir}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_status(run_dir)["state"] == "finished"
    assert (run_dir / "benchmark.md").is_file()
    assert "benchmark: run directory" in (run_dir / "benchmark.log").read_text()  # the logged setup
