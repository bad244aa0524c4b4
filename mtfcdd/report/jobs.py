"""The jobs of a sweep: where they are, whether they finished, and one row of numbers per finished job."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mtfcdd.core.defect_types import RGB, palette_colour, vocabulary_of
from mtfcdd.core.errors import UserError
from mtfcdd.metrics.evaluator import ANY_DEFECT, METRICS
from mtfcdd.report.labels import labels_used
from mtfcdd.run.status import read_status
from mtfcdd.sampling.balance import resolve_balance

HYDRA_CONFIG = Path(".hydra") / "config.yaml"
RESULTS_FILE = "results.json"
SETTINGS = ("model", "alpha", "mode", "backbone", "seed", "balance", "protocol", "image_score")
"""The columns that say which run a row is (the first five are what a sweep usually varies)."""


class ReportError(UserError):
    """Nothing to report on, or a run directory that cannot be read."""


@dataclass
class Job:
    """One run directory: ``state`` is finished, failed, running, died or unknown (no ``status.json``);
    ``results`` the parsed ``results.json`` (None when absent); ``detail`` what went wrong, for the listing;
    ``status`` the job's ``status.json`` (None when it wrote none)."""

    path: Path
    name: str
    config: DictConfig
    state: str
    results: dict | None = None
    detail: str = ""
    settings: dict = field(default_factory=dict)
    status: dict | None = None

    @property
    def reported(self) -> bool:
        """A row in the report: the job finished and its test stage wrote ``results.json``."""
        return self.state == "finished" and self.results is not None


def config_value(config: DictConfig, key: str):
    """``key`` of a saved Hydra config, interpolations resolved where they can be outside Hydra (else None)."""
    try:
        return OmegaConf.select(config, key, throw_on_resolution_failure=False)
    except Exception:  # a resolver that only exists inside a Hydra run (hydra:runtime...)
        return None


def _balance(config: DictConfig) -> str | None:
    """The classes the job's sampler drew (``data.balance`` with ``auto`` resolved for its mode)."""
    balance, mode = config_value(config, "data.balance"), config_value(config, "mode")
    try:
        return resolve_balance(balance, mode) if balance is not None else None
    except (UserError, KeyError):
        return balance


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories (holding ``.hydra/config.yaml``) given directly or found under ``paths``, in path order."""
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise ReportError(f"{path} is not a directory; expected a multirun directory or run directories")
        if (path / HYDRA_CONFIG).is_file():
            found.append(path)
            continue
        inside = sorted(p.parent.parent for p in path.rglob(str(HYDRA_CONFIG)))
        if not inside:
            raise ReportError(f"no run directory (a folder with {HYDRA_CONFIG}) under {path}")
        found.extend(inside)
    return sorted(set(found), key=lambda p: (str(p.parent), _job_number(p), p.name))


def _job_number(path: Path) -> int:
    """Hydra's job number from a multirun subdir name ``<num>_...`` (sorts job 10 after job 9)."""
    head = path.name.split("_", 1)[0]
    return int(head) if head.isdigit() else -1


def load_job(path: Path, base: Path | None = None) -> Job:
    """Read one run directory: its saved config, ``status.json`` and ``results.json``."""
    config_path = path / HYDRA_CONFIG
    try:
        config = OmegaConf.load(config_path)
    except Exception as err:
        raise ReportError(f"cannot read {config_path}: {err}") from err
    name = str(path.relative_to(base)) if base is not None and path.is_relative_to(base) else str(path)
    status = read_status(path)
    results_path = path / RESULTS_FILE
    results = None
    if results_path.is_file():
        try:
            results = json.loads(results_path.read_text())
        except json.JSONDecodeError as err:
            raise ReportError(f"{results_path} is not valid JSON: {err}") from err
    if status is not None:
        state = status["state"]
        detail = {
            "failed": status.get("error", ""),
            "running": f"pid {status.get('pid')} on {status.get('host')}",
            "died": f"pid {status.get('pid')} on {status.get('host')} is gone without a final status",
        }.get(state, "")
        if state == "finished" and results is None:
            detail = "finished without a test stage (no results.json)"
    elif results is not None:
        state, detail = "finished", ""
    else:
        state, detail = "unknown", "no status.json and no results.json (interrupted, or written by an older version)"
    job = Job(path=path, name=name, config=config, state=state, results=results, detail=detail, status=status)
    tested = results or {}
    job.settings = {
        # what was tested, from the results where they say it (an `evaluate` run's own config names no model,
        # backbone or mode; a detector adds "+<name>" to the model)
        "model": tested.get("model") or config_value(config, "model.name") or "mtfcdd",
        "alpha": config_value(config, "alpha"),
        "mode": tested.get("mode") or config_value(config, "mode"),
        "backbone": tested.get("backbone") or config_value(config, "model.backbone.name"),
        "seed": config_value(config, "seed"),
        "balance": _balance(config),
        "protocol": results["protocol"] if results else config_value(config, "model.evaluation.protocol"),
        "image_score": results["image_score"] if results else config_value(config, "model.evaluation.image_score"),
    }
    return job


def load_jobs(paths: list[Path]) -> list[Job]:
    """Every job under ``paths`` (see ``find_run_dirs``); names relative to the first path."""
    base = paths[0] if len(paths) == 1 else None
    return [load_job(path, base) for path in find_run_dirs(paths)]


def type_names(jobs: list[Job]) -> list[str]:
    """The defect types of the reported mode-multi jobs, in channel order of the first one that has each."""
    names: list[str] = []
    for job in jobs:
        if job.reported and job.results["mode"] == "multi":
            names += [name for name in job.results["types"] if name not in names]
    return names


def _config_colours(config: DictConfig) -> dict[str, RGB]:
    """Type name -> colour of a job's saved config (``data.vocabulary``, else ``data.defect_codes`` with
    ``data.type_colours``); empty where it names no valid vocabulary."""
    keys = ("vocabulary", "defect_codes", "type_names", "type_colours")
    data = {key: config_value(config, f"data.{key}") for key in keys}
    try:
        vocabulary = vocabulary_of({"data": data})
    except UserError:
        return {}
    return dict(zip(vocabulary.names, vocabulary.colours))


def type_colours(jobs: list[Job], names: list[str]) -> dict[str, RGB]:
    """The figure colour of each type of ``names``: as the first reported job that has it coloured it (its
    ``results.json`` ``type_colours``, else its saved config's vocabulary); else by its position in the palette."""
    colours: dict[str, RGB] = {}
    for job in jobs:
        if job.reported:
            found = {name: tuple(c) for name, c in (job.results.get("type_colours") or {}).items()}
            for name, colour in {**_config_colours(job.config), **found}.items():
                colours.setdefault(name, colour)
    return {name: colours.get(name, palette_colour(position)) for position, name in enumerate(names)}


def job_row(job: Job, types: list[str]) -> dict:
    """One row: job name, settings, every mean metric, type accuracy and macro-F1, labelled images per type
    (``labels_per_type``, ``labels_used``: see ``mtfcdd.report.labels``), then ``<metric>/<type>`` for
    ``types``; values are fractions exactly as in ``results.json`` (None where undefined or not applicable)."""
    results = job.results
    row = {"job": job.name, **job.settings, "test_images": results["counts"]["images"]}
    row.update({metric: results["mean"][metric] for metric in METRICS})
    row.update({f"{ANY_DEFECT}/{metric}": results[ANY_DEFECT][metric] for metric in METRICS})
    classification = results.get("type_classification")
    row["type_accuracy"] = classification["accuracy"] if classification else None
    row["type_macro_f1"] = classification["macro_f1"] if classification else None
    # data=folder: the labelled defect images per type asked for (None: all) and the most of one type trained on
    row["labels_per_type"] = config_value(job.config, "data.train_defects_per_type")
    split_dir = config_value(job.config, "data.split_dir")
    row["labels_used"] = labels_used(Path(split_dir) if split_dir else job.path / "split")
    per_type = results["types"] if results["mode"] == "multi" else {}
    for metric in METRICS:
        for name in types:
            row[f"{metric}/{name}"] = per_type[name][metric] if name in per_type else None
    return row
