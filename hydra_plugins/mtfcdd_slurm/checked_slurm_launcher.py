"""hydra-submitit-launcher's SLURM launcher with a check, before any submission, that each job fits its tasks."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from mtfcdd.run.slurm import check_slurm_layout


class CheckedSlurmLauncher(SlurmLauncher):
    """Refuses a sweep when one of its jobs' trainer does not match the submitted tasks and nodes
    (:func:`mtfcdd.run.slurm.check_slurm_layout`); otherwise submits exactly as the plugin does."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        for overrides in job_overrides:
            job_cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            check_slurm_layout(self.params, job_cfg.trainer)
        return super().launch(job_overrides, initial_job_idx)
