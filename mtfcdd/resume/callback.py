"""What an exact resume needs besides weights, optimiser and loop state: the random states, and a checkpoint on the
signals clusters send before they stop a job (SIGTERM, SIGUSR1)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.utilities.rank_zero import rank_zero_info

SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGUSR1": signal.SIGUSR1}


class RandomStates(L.Callback):
    """Saves the global random states of torch (CPU and CUDA), numpy and Python in every checkpoint and restores them
    right before the first training batch of a resumed run, the point where the interrupted run stood.

    The checkpoint holds rank 0's states (under DDP every rank restores those). The loaders' workers hold no state
    of their own: each draw's augmentation is seeded from its place in the sequence (``mtfcdd.resume.loader``).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        states = _collect_rng_states(include_cuda=True)
        kind, key, position, has_gauss, gauss = states["numpy"]
        # plain containers only: checkpoints load with torch.load(weights_only=True)
        states["numpy"] = [kind, key.tolist(), int(position), int(has_gauss), float(gauss)]
        return states

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._pending is None:
            return
        states, self._pending = self._pending, None
        kind, key, position, has_gauss, gauss = states["numpy"]
        states["numpy"] = (kind, np.asarray(key, dtype=np.uint32), position, has_gauss, gauss)
        python = states["python"]
        states["python"] = (python[0], tuple(python[1]), python[2])
        if not torch.cuda.is_available():  # a GPU run continued on a machine without one
            states.pop("torch.cuda", None)
        _set_rng_states(states)


class StopOnSignal(L.Callback):
    """On SIGTERM or SIGUSR1 (``signals``), finish the current training step, write ``checkpoint`` (the run's
    ``last.ckpt``) and stop with exit status 128 + signal number; ``resume=true`` continues from there.

    The SIGTERM handler replaces Lightning's while training runs (Lightning's would stop in the middle of a
    validation without a checkpoint), so validation and epoch ends in progress complete first. A SIGUSR1 handler
    installed before (Lightning's SLURM requeue, when auto-requeue is on) is still called. Under DDP every rank stops
    at the same step once any rank is signalled.
    """

    def __init__(self, checkpoint: str, signals: list[str] | None = None) -> None:
        signals = ["SIGTERM", "SIGUSR1"] if signals is None else list(signals)
        unknown = [name for name in signals if name not in SIGNALS]
        if unknown:
            raise ValueError(f"callbacks.stop_on_signal.signals: unknown {unknown}; choose from {sorted(SIGNALS)}")
        self.checkpoint = Path(checkpoint)
        self.signals = [SIGNALS[name] for name in signals]
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        previous = self._previous.get(signum)
        if signum == signal.SIGUSR1 and callable(previous):
            previous(signum, frame)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for signum in self.signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        signum = self.received or signal.SIGTERM
        trainer.save_checkpoint(self.checkpoint)
        name = signal.Signals(signum).name
        rank_zero_info(
            f"{name} received: stopped after step {trainer.global_step}, checkpoint written to {self.checkpoint}; "
            "continue with resume=true hydra.run.dir=<this run's directory>"
        )
        raise SystemExit(128 + signum)
