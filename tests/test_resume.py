"""Exact resume: a training run killed mid-epoch or between epochs and continued with ``resume=true`` ends with the
same weights as a run that was never interrupted."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers.overrides import tiny_data
from mtfcdd.resume.checkpoint_io import AtomicCheckpointIO
from mtfcdd.resume.loader import ResumableLoader, SeededDraws
from mtfcdd.sampling.sampler import BalancedClassSampler

STEPS_PER_EPOCH = 4
EPOCHS = 2


def train_command(root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mtfcdd.train",
        "debug=default",
        *tiny_data(root),
        "logger=csv",
        "test=false",
        f"trainer.max_epochs={EPOCHS}",
        f"trainer.limit_train_batches={STEPS_PER_EPOCH}",
        "trainer.enable_progress_bar=false",
        f"paths.log_dir={run_dir.parent}/logs",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def run(command: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def head_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return {key: value for key, value in state.items() if key.startswith("net.head.")}


def global_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def start_and_stop(command: list[str], checkpoint: Path, signum: int) -> tuple[int, str]:
    """Run ``command``; as soon as ``checkpoint`` exists, send ``signum``. Returns (exit status, stderr)."""
    log = checkpoint.parents[2] / f"{checkpoint.parents[1].name}.stderr"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if checkpoint.is_file():
                proc.send_signal(signum)
                break
            time.sleep(0.01)
        proc.wait(timeout=600)
    return proc.returncode, log.read_text()


@pytest.fixture(scope="module")
def uninterrupted(tiny_realiad, tmp_path_factory) -> dict[str, torch.Tensor]:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    run(train_command(tiny_realiad, run_dir, "data.num_workers=0", "callbacks.step_checkpoint.every_n_train_steps=2"))
    return head_weights(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "workers", "step_every", "where"),
    [
        (signal.SIGKILL, 0, 2, "mid-epoch"),
        (signal.SIGKILL, 2, 1000, "between epochs"),
        (signal.SIGTERM, 2, 2, "mid-epoch"),
    ],
)
def test_killed_and_resumed_run_ends_with_the_uninterrupted_weights(
    tiny_realiad, tmp_path, uninterrupted, signum, workers, step_every, where
):
    run_dir = tmp_path / "run"
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    options = [f"data.num_workers={workers}", f"callbacks.step_checkpoint.every_n_train_steps={step_every}"]
    # mid-epoch: the first step checkpoint (step 2); between epochs: the first epoch-end checkpoint (step 4)
    returncode, stderr = start_and_stop(train_command(tiny_realiad, run_dir, *options), checkpoint, signum)
    if signum == signal.SIGTERM:  # finishes its step, writes last.ckpt, exits with 128 + 15
        assert returncode == 128 + signal.SIGTERM, stderr[-3000:]
        assert "SIGTERM received: stopped after step" in stderr
    else:
        assert returncode == -signal.SIGKILL, stderr[-3000:]
    step = global_step(checkpoint)
    if where == "mid-epoch":
        assert step % STEPS_PER_EPOCH > 0, step
    else:
        assert step == STEPS_PER_EPOCH
    assert step < EPOCHS * STEPS_PER_EPOCH
    run(train_command(tiny_realiad, run_dir, *options, "resume=true"))
    assert global_step(checkpoint) == EPOCHS * STEPS_PER_EPOCH
    resumed = head_weights(run_dir)
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key
    # one run directory: both parts in its log, one best and one last checkpoint
    log = (run_dir / "debug.log").read_text()
    assert log.count("split index ") == 2 and log.count(f"continuing from checkpoint {checkpoint}") == 1
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert len(names) == 2 and names[0].startswith("best_epoch") and names[1] == "last.ckpt", names


def test_resume_without_a_checkpoint_names_the_missing_file(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mtfcdd.train", "resume=true", "logger=none", f"hydra.run.dir={tmp_path}/run"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert f"no checkpoint at {tmp_path}/run/checkpoints/last.ckpt" in proc.stderr
    assert "hydra.run.dir=" in proc.stderr


# ---------------------------------------------------------------- the pieces


def test_loader_state_is_the_draws_handed_out_and_restores_the_rest_of_the_epoch():
    classes = [0] * 7 + [1] * 3 + [2] * 5
    dataset = SeededDraws(_Indices(len(classes)), seed=3)

    def loader() -> ResumableLoader:
        sampler = BalancedClassSampler(classes, num_samples=23, seed=3, draw_keys=True)
        sampler.set_epoch(2)
        return ResumableLoader(dataset, batch_size=4, sampler=sampler)

    full = [batch.tolist() for batch in loader()]
    interrupted = loader()
    iterator = iter(interrupted)
    head = [next(iterator).tolist() for _ in range(3)]
    state = interrupted.state_dict()
    assert state == {"epoch": 2, "position": 12}
    resumed = loader()
    resumed.load_state_dict(state)
    rest = [batch.tolist() for batch in resumed]
    assert head + rest == full
    assert resumed.state_dict() == {"epoch": 2, "position": 23}
    resumed.sampler.set_epoch(3)  # a new epoch starts from its beginning
    assert len(list(resumed)) == 6


def test_draw_seeds_do_not_depend_on_the_worker_count():
    classes = [0] * 5 + [1] * 5
    dataset = SeededDraws(_Indices(len(classes)), seed=0)
    batches = {}
    for workers in (0, 2):
        sampler = BalancedClassSampler(classes, num_samples=12, seed=0, draw_keys=True)
        batches[workers] = list(ResumableLoader(dataset, batch_size=3, sampler=sampler, num_workers=workers))
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2]))
    assert len({float(b) for batch in batches[0] for b in batch[:, 1]}) == 12  # every draw its own random stream


def test_checkpoint_write_never_truncates_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io_plugin = AtomicCheckpointIO()
    io_plugin.save_checkpoint({"step": torch.tensor(1)}, path)
    before = path.read_bytes()

    def killed(src, dst):  # the process dies between writing the temporary file and renaming it
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        io_plugin.save_checkpoint({"step": torch.tensor(2), "big": torch.zeros(1 << 20)}, path)
    assert path.read_bytes() == before
    assert torch.load(io.BytesIO(before), weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


class _Indices(torch.utils.data.Dataset):
    """Item i: [i, a random number of the current augmentation stream]."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.generator = torch.Generator()

    def __len__(self) -> int:
        return self.size

    def reseed(self, entropy) -> None:
        import numpy as np

        self.generator.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(index), torch.rand(1, generator=self.generator).item()], dtype=torch.float64)


def test_a_run_directory_keeps_one_wandb_run_id(tmp_path):
    from helpers.hydra_compose import compose_config
    from mtfcdd.resume.run_dir import WANDB_ID_FILE, set_wandb_run_id

    ids = []
    for run in ("a", "a", "b"):
        cfg = compose_config(tmp_path / run, ["logger=wandb"])
        set_wandb_run_id(cfg)
        ids.append(cfg.logger.wandb.id)
        assert cfg.logger.wandb.resume == "allow"
        assert (tmp_path / run / "run" / WANDB_ID_FILE).read_text().strip() == cfg.logger.wandb.id
    assert ids[0] == ids[1] != ids[2]


def test_resume_clears_unfinished_writes_and_refuses_a_second_checkpoint_and_a_finished_run(tmp_path):
    from helpers.hydra_compose import compose_config
    from mtfcdd.core.config import ConfigError
    from mtfcdd.resume.run_dir import LAST_CHECKPOINT, resume_checkpoint

    cfg = compose_config(tmp_path, ["resume=true", "logger=none"])
    run_dir = Path(cfg.paths.output_dir)
    (run_dir / LAST_CHECKPOINT).parent.mkdir(parents=True)
    (run_dir / LAST_CHECKPOINT).write_bytes(b"")
    stale = run_dir / LAST_CHECKPOINT.parent / ".best_epoch000.ckpt.r3u0h75n.tmp"  # a write the kill cut short
    stale.write_bytes(b"partial")
    assert resume_checkpoint(cfg) == str(run_dir / LAST_CHECKPOINT)
    assert not stale.exists() and (run_dir / LAST_CHECKPOINT).is_file()
    cfg.ckpt_path = "other.ckpt"
    with pytest.raises(ConfigError, match="drop ckpt_path='other.ckpt'"):
        resume_checkpoint(cfg)
    cfg.ckpt_path = None
    (run_dir / "results.json").write_text("{}")
    with pytest.raises(ConfigError, match="already finished"):
        resume_checkpoint(cfg)
