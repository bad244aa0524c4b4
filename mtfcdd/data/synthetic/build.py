"""Building a set once: write to a temporary sibling folder, record the parameters in a marker, rename into place;
reuse a build whose marker matches."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mtfcdd.core.errors import UserError
from mtfcdd.data.synthetic.config import PRESETS, SyntheticConfig
from mtfcdd.data.synthetic.folders import (
    FOLDER_LAYOUTS,
    check_defects_per_type,
    check_types,
    folder_counts,
    folder_tasks,
    write_view,
)
from mtfcdd.data.synthetic.layout import IMAGE_FOLDER, LAYOUTS, _plan_splits, _write_jsons, _write_sample
from mtfcdd.data.synthetic.sample import VIEWS

log = logging.getLogger("mtfcdd.data")

GENERATOR_VERSION = 2
"""Bumped whenever the output for given parameters changes; a cached build of another version is rebuilt."""
MARKER_NAME = "synthetic_realiad.json"


def _resolve(preset: str | SyntheticConfig) -> SyntheticConfig:
    if isinstance(preset, SyntheticConfig):
        return preset
    if preset not in PRESETS:
        raise UserError(f"preset={preset!r} is not valid; choose one of: {', '.join(PRESETS)}")
    return PRESETS[preset]


def _parameters(
    config: SyntheticConfig,
    seed: int,
    layout: str,
    types: Sequence[str] | None = None,
    defects_per_type: int | None = None,
) -> dict[str, Any]:
    """What the marker records and a cached build must match (the folder layouts add their types and count)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"seed={seed!r} is not valid; expected a non-negative integer")
    if layout not in LAYOUTS + FOLDER_LAYOUTS:
        raise UserError(f"layout={layout!r} is not valid; choose one of: {', '.join(LAYOUTS + FOLDER_LAYOUTS)}")
    settings = asdict(config)
    settings["categories"] = list(config.categories)
    parameters = {"generator_version": GENERATOR_VERSION, "seed": seed, "layout": layout, "config": settings}
    if layout in FOLDER_LAYOUTS:
        parameters["types"] = list(check_types(types))
        parameters["defects_per_type"] = check_defects_per_type(config, defects_per_type)
    elif types is not None or defects_per_type is not None:
        raise UserError(
            f"types and defects_per_type apply to the {' and '.join(FOLDER_LAYOUTS)} layouts; layout={layout!r} "
            "writes the 8 Real-IAD types (test_ng_samples sets their test samples)"
        )
    return parameters


def read_marker(root: str | os.PathLike) -> dict[str, Any] | None:
    """The marker of a synthetic build at ``root`` (parameters and counts), or None when there is none."""
    path = Path(root) / MARKER_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: unreadable synthetic-build marker ({err}); delete {path.parent} to rebuild") from err


def _check_replaceable(out: Path) -> None:
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MARKER_NAME).is_file())):
        raise UserError(
            f"{out} exists and is not a synthetic Real-IAD build (no {MARKER_NAME}); refusing to overwrite it. "
            "Choose another output folder or empty it"
        )


def _install(tmp: Path, out: Path, parameters: dict[str, Any]) -> None:
    """Move the finished build ``tmp`` to ``out``, replacing an earlier synthetic build there.

    If another process installed a build with the same parameters meanwhile, that one is kept and ``tmp`` dropped.
    """
    marker = read_marker(out) if out.is_dir() else None
    if marker is not None and marker.get("parameters") == parameters:
        shutil.rmtree(tmp)
        return
    _check_replaceable(out)
    old = None
    if out.is_dir() and marker is not None:
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "build")
    elif out.is_dir():
        out.rmdir()
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old)


def _default_workers(samples: int) -> int:
    """In-process for small builds (no start-up cost), else one process per available core (at most 4)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 1 if samples < 200 else min(cores, 4)


def _write_samples(write: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], workers: int) -> list[Any]:
    """Run ``write`` (a module-level function) on every task, in ``workers`` spawned processes (in order; 1 =
    in-process)."""
    if workers <= 1:
        return [write(*task) for task in tasks]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(write, *zip(*tasks), chunksize=8))


def _write_realiad(tmp: Path, config: SyntheticConfig, seed: int, layout: str, workers: int | None) -> dict[str, Any]:
    """Write the Real-IAD layout under ``tmp``; return the image counts per category and split."""
    plans = {category: _plan_splits(config, category, seed) for category in config.categories}
    tasks = [
        (str(tmp / IMAGE_FOLDER / category), category, kind, number, config.size, seed)
        for category, plan in plans.items()
        for kind, number in plan.samples
    ]
    workers = _default_workers(len(tasks)) if workers is None else workers
    log.info(
        "synthetic Real-IAD: rendering %d samples (x%d views) with %d process(es)", len(tasks), len(VIEWS), workers
    )
    written = iter(_write_samples(_write_sample, tasks, workers))
    counts = {}
    for category, plan in plans.items():
        records = {sample: next(written) for sample in plan.samples}
        counts[category] = _write_jsons(tmp, config, category, plan, records, layout)
    return counts


def _write_folders(tmp: Path, config: SyntheticConfig, parameters: dict[str, Any], workers: int | None) -> dict:
    """Write a folder layout (one view per sample) under ``tmp``; return the image counts per category and folder."""
    layout, types = parameters["layout"], parameters["types"]
    tasks = folder_tasks(tmp, config, parameters["seed"], layout, types, parameters["defects_per_type"])
    workers = _default_workers(len(tasks)) if workers is None else workers
    log.info(
        "synthetic %s folders: rendering %d images (types %s) with %d process(es)",
        layout,
        len(tasks),
        ", ".join(types),
        workers,
    )
    _write_samples(write_view, tasks, workers)
    return folder_counts(tasks)


# fmt: off
def build_synthetic(out: str | os.PathLike, preset: str | SyntheticConfig = "demo", *, seed: int = 0,
                    layout: str = "flat", workers: int | None = None, types: Sequence[str] | None = None,
                    defects_per_type: int | None = None) -> dict[str, Any]:
    # fmt: on
    """Generate the set at ``out`` (replacing an earlier synthetic build there); return the marker it wrote.

    The files are written to a temporary sibling folder that is renamed to ``out`` once complete; on any error
    the temporary folder is removed and ``out`` is left as it was. Refuses to touch an ``out`` that holds
    anything but an earlier synthetic build. ``workers`` processes render in parallel (None: see
    ``_default_workers``); the output does not depend on it. ``layout`` is one of ``LAYOUTS`` (Real-IAD) or
    ``FOLDER_LAYOUTS``; the latter take ``types`` (names out of ``FOLDER_TYPES``, None: all) and
    ``defects_per_type`` (None: see ``check_defects_per_type``).
    """
    config = _resolve(preset)
    parameters = _parameters(config, seed, layout, types, defects_per_type)
    out = Path(out).absolute()
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        counts = (
            _write_folders(tmp, config, parameters, workers)
            if layout in FOLDER_LAYOUTS
            else _write_realiad(tmp, config, seed, layout, workers)
        )
        totals: dict[str, int] = {}
        for per_category in counts.values():
            for key, value in per_category.items():
                totals[key] = totals.get(key, 0) + value
        marker = {"parameters": parameters, "totals": totals, "per_category": counts}
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        _install(tmp, out, parameters)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "synthetic set (%s layout) written to %s in %.1f s (%d images, %d masks)",
        layout,
        out,
        time.perf_counter() - started,
        totals["images"],
        totals["masks"],
    )
    return marker


# fmt: off
def ensure_synthetic(root: str | os.PathLike, preset: str | SyntheticConfig = "demo", seed: int = 0,
                     layout: str = "flat", *, workers: int | None = None, types: Sequence[str] | None = None,
                     defects_per_type: int | None = None) -> Path:
    # fmt: on
    """The synthetic set at ``root``, built unless a build with the same parameters and generator version is there.

    ``preset`` is a name out of ``PRESETS`` or a ``SyntheticConfig``; ``workers``, ``types`` and
    ``defects_per_type`` as in ``build_synthetic``. Returns ``root``.
    """
    parameters = _parameters(_resolve(preset), seed, layout, types, defects_per_type)
    root = Path(root)
    marker = read_marker(root) if root.is_dir() else None
    if marker is not None and marker.get("parameters") == parameters:
        log.info("synthetic Real-IAD at %s is up to date (generator v%d)", root, GENERATOR_VERSION)
        return root
    if marker is not None:
        log.info("synthetic Real-IAD at %s was built with other parameters; rebuilding", root)
    build_synthetic(
        root, preset, seed=seed, layout=layout, workers=workers, types=types, defects_per_type=defects_per_type
    )
    return root
