"""SLURM without a cluster: the sbatch script the launcher writes, the layout check, and Lightning's SLURM plugin."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only as fabric_rank_zero_only
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only

from helpers.hydra_compose import compose_config
from helpers.overrides import tiny_data
from mtfcdd.core.config import ConfigError, config_dir
from mtfcdd.model.build import build_module
from mtfcdd.run.build import build_datamodule
from mtfcdd.run.slurm import check_slurm_layout, slurm_plugins

FAKE_SBATCH = """#!/bin/sh
# keeps the submission script, then refuses it (no cluster here)
for arg in "$@"; do case "$arg" in *.sh) cp "$arg" "{copy}";; esac; done
echo "fake sbatch: refused" >&2
exit 1
"""


@pytest.fixture
def fake_slurm(tmp_path: Path) -> tuple[dict, Path]:
    """An environment whose PATH has an `sbatch` that records the script it is given, and an `srun`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    copy = tmp_path / "submitted.sh"
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(copy=copy))
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, copy


def run_train(args: list[str], env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtfcdd.train", "-m", *args, "logger=none", f"paths.log_dir={tmp_path}/logs"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def sbatch_options(script: str) -> dict[str, str]:
    options = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line[len("#SBATCH --") :].partition("=")
            options[key] = value
    return options


def test_slurm_launcher_writes_the_sbatch_options_from_launcher_and_trainer(tmp_path, fake_slurm):
    env, copy = fake_slurm
    proc = run_train(
        [
            "hydra/launcher=slurm",
            "trainer=ddp",
            "trainer.num_nodes=2",
            "trainer.devices=4",
            "alpha=0.1,0.2",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.cpus_per_task=6",
            "hydra.launcher.mem_gb=48",
            "hydra.launcher.timeout_min=90",
            "hydra.launcher.signal_delay_s=240",
            "+hydra.launcher.additional_parameters.account=proj",
        ],
        env,
        tmp_path,
    )
    assert proc.returncode != 0 and "fake sbatch: refused" in proc.stderr  # it reached sbatch
    options = sbatch_options(copy.read_text())
    assert options["array"] == "0-1%2"  # one array task per sweep point
    assert options["partition"] == "gpu" and options["account"] == "proj"
    assert options["nodes"] == "2" and options["ntasks-per-node"] == "4" and options["gpus-per-node"] == "4"
    assert options["cpus-per-task"] == "6" and options["mem"] == "48GB" and options["time"] == "90"
    # Lightning's requeue signal (trainer.plugins.requeue_signal), not submitit's USR2
    assert options["signal"] == "USR1@240"
    sweep_dir = next((tmp_path / "logs").glob("*/*/multiruns/*"))
    assert str(sweep_dir / ".submitit") in options["output"]


@pytest.mark.parametrize(
    ("overrides", "keys"),
    [
        (["trainer=ddp", "hydra.launcher.tasks_per_node=1"], ("hydra.launcher.tasks_per_node=1", "trainer.devices=2")),
        (["trainer=ddp", "trainer.devices=1,2"], ("hydra.launcher.tasks_per_node=2", "trainer.devices=1")),
    ],
)
def test_tasks_per_node_not_matching_devices_stops_before_submission(tmp_path, fake_slurm, overrides, keys):
    env, copy = fake_slurm
    proc = run_train(["hydra/launcher=slurm", *overrides], env, tmp_path)
    assert proc.returncode != 0
    assert "ConfigError" in proc.stderr and all(key in proc.stderr for key in keys), proc.stderr[-2000:]
    assert not copy.exists()  # nothing was submitted


def compose_with_hydra(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def launcher_values(cfg) -> dict:
    return {"tasks_per_node": cfg.hydra.launcher.tasks_per_node, "nodes": cfg.hydra.launcher.nodes}


def test_launcher_follows_the_trainer_and_the_check_names_both_keys():
    cfg = compose_with_hydra(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=3"])
    assert launcher_values(cfg) == {"tasks_per_node": 4, "nodes": 3} and cfg.hydra.launcher.gpus_per_node == 4
    check_slurm_layout(launcher_values(cfg), cfg.trainer)
    single = compose_with_hydra(["hydra/launcher=slurm", "trainer=gpu"])
    check_slurm_layout(launcher_values(single), single.trainer)  # no num_nodes key: one node
    with pytest.raises(ConfigError, match=r"hydra\.launcher\.tasks_per_node=2 does not match trainer\.devices=4"):
        check_slurm_layout({"tasks_per_node": 2, "nodes": 3}, cfg.trainer)
    with pytest.raises(ConfigError, match=r"hydra\.launcher\.nodes=1 does not match trainer\.num_nodes=3"):
        check_slurm_layout({"tasks_per_node": 4, "nodes": 1}, cfg.trainer)
    auto = compose_with_hydra(["trainer=ddp", "trainer.devices=auto"])
    with pytest.raises(ConfigError, match=r"trainer\.devices='auto'"):
        check_slurm_layout({"tasks_per_node": 2, "nodes": 1}, auto.trainer)


SLURM_ENV = {
    "SLURM_NTASKS": "4",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_JOB_NAME": "train",
    "SLURM_JOB_ID": "77",
    "SLURM_NODELIST": "gpu[01-02]",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1",
}


def test_ddp_trainer_under_slurm_uses_lightnings_slurm_environment_with_requeue(monkeypatch, tmp_path):
    cfg = compose_with_hydra(["trainer=ddp", "trainer.accelerator=cpu", "trainer.num_nodes=2", "trainer.devices=2"])
    assert slurm_plugins(True, "USR1") == []  # not under SLURM
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    for rank_zero_only in (fabric_rank_zero_only, utils_rank_zero_only):  # the trainer sets them to rank 3
        monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    (tmp_path / "srun").write_text("#!/bin/sh\n")
    trainer = instantiate(cfg.trainer, default_root_dir=str(tmp_path), logger=False)
    environment = trainer._accelerator_connector.cluster_environment
    assert isinstance(environment, SLURMEnvironment)
    assert environment.auto_requeue and environment.requeue_signal == signal.SIGUSR1
    assert (trainer.num_nodes, trainer.num_devices, trainer.world_size, trainer.global_rank) == (2, 2, 4, 3)


def test_requeue_signal_must_be_a_signal_name():
    with pytest.raises(ConfigError, match="trainer.plugins.requeue_signal='SIGUSR1'"):
        slurm_plugins(True, "SIGUSR1")


class SignalAtStep(L.Callback):
    """Sends this process ``signum`` once training reaches ``step``: what SLURM does before the time limit."""

    def __init__(self, step: int, signum: signal.Signals) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def test_requeue_signal_saves_an_hpc_checkpoint_requeues_and_the_rerun_resumes(monkeypatch, tmp_path, tiny_realiad):
    one_task = {
        **SLURM_ENV,
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NODELIST": "gpu01",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }
    for key, value in one_task.items():
        monkeypatch.setenv(key, value)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "srun").write_text("#!/bin/sh\n")
    for tool in ("scontrol", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    cfg = compose_config(
        tmp_path, [*tiny_data(tiny_realiad), "debug=limit", "logger=none", "callbacks=none", "data.num_workers=0"]
    )
    run_dir = Path(cfg.paths.output_dir)

    def fit(callbacks: list) -> L.Trainer:
        datamodule = build_datamodule(cfg)
        module = build_module(cfg)
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False, limit_val_batches=0)
        trainer.fit(module, datamodule=datamodule, weights_only=True)
        return trainer

    first = fit([SignalAtStep(2, signal.SIGUSR1)])
    assert isinstance(first._accelerator_connector.cluster_environment, SLURMEnvironment)
    assert (run_dir / "hpc_ckpt_1.ckpt").is_file()
    assert calls.read_text().split() == ["requeue", "77"]  # Lightning asked SLURM to requeue this job
    second = fit([])  # the requeued job: same run folder, no ckpt_path given
    assert second.ckpt_path == str(run_dir / "hpc_ckpt_1.ckpt")
