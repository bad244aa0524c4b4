"""Shared fixtures: a tiny synthetic Real-IAD set, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.overrides import tiny_data
from mtfcdd.data.synthetic import ensure_synthetic


@pytest.fixture(scope="session")
def tiny_realiad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a synthetic Real-IAD set (preset ``tiny``, seed 0, flat layout: 2 categories incl. audiojack,
    64 px, all JSON sets). Shared by the whole session: treat it as read-only."""
    return ensure_synthetic(tmp_path_factory.mktemp("realiad") / "tiny", preset="tiny", seed=0, layout="flat")


TRAINED_MEAN, TRAINED_STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
"""A ``data.mean``/``data.std`` override that the trained runs below are made with (the pipeline must carry it)."""


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny_realiad: Path):
    """Factory ``image_score -> run directory`` of a short real training (train, validate, test) on the tiny set with
    a ``data.mean``/``data.std`` override and the any-defect view's normal-quantile scale, cached per image score for
    the session. Treat the runs as read-only."""
    from helpers.hydra_compose import compose_config
    from mtfcdd.train import run_task

    runs: dict[str, Path] = {}

    def run(image_score: str = "max") -> Path:
        if image_score not in runs:
            tmp = tmp_path_factory.mktemp(f"trained-{image_score}")
            cfg = compose_config(
                tmp,
                [
                    *tiny_data(tiny_realiad),
                    "debug=limit",
                    "logger=none",
                    "data.num_workers=0",
                    f"model.evaluation.image_score={image_score}",
                    "model.evaluation.any_defect_quantile=0.9",
                    f"data.mean=[{','.join(map(str, TRAINED_MEAN))}]",
                    f"data.std=[{','.join(map(str, TRAINED_STD))}]",
                ],
            )
            run_task(cfg)
            runs[image_score] = Path(cfg.paths.output_dir)
        return runs[image_score]

    return run
