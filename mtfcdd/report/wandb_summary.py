"""One W&B run holding a sweep's report: the summary table, the jobs without results and every plot, in the W&B
project and group the jobs logged to (as each job recorded it in ``status.json``; else ``logger.wandb.*`` of its
saved config), offline when they were."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from mtfcdd.report.files import problems_table
from mtfcdd.report.jobs import Job, config_value
from mtfcdd.run.status import WANDB_KEYS

log = logging.getLogger("mtfcdd.report")


def wandb_settings(jobs: list[Job]) -> dict | None:
    """The most common ``logger.wandb`` project, entity, group and offline flag of ``jobs`` (None: no job logged to
    W&B); a warning when the jobs disagree."""
    found = []
    for job in jobs:
        recorded = (job.status or {}).get("wandb")
        if recorded is not None:
            found.append(tuple(recorded.get(key) for key in WANDB_KEYS))
        elif job.status is None and config_value(job.config, "logger.wandb") is not None:
            found.append(tuple(config_value(job.config, f"logger.wandb.{key}") for key in WANDB_KEYS))
    if not found:
        return None
    counts = Counter(found)
    if len(counts) > 1:
        log.warning("the jobs logged to %d W&B project/group settings; the report goes to the most common", len(counts))
    return dict(zip(WANDB_KEYS, counts.most_common(1)[0][0]))


def log_summary_run(settings: dict, jobs: list[Job], rows: list[dict], plots: list[Path], out_dir: Path) -> Path:
    """Create the summary run (job_type ``report``) under ``out_dir/wandb``; returns its run directory."""
    import wandb

    run = wandb.init(
        project=settings["project"],
        entity=settings["entity"],
        group=settings["group"],
        job_type="report",
        name=f"report {out_dir.name}",
        dir=str(out_dir),
        mode="offline" if settings["offline"] else "online",
        config={"jobs": len(jobs), "reported": len(rows), "sweep_dir": str(out_dir)},
        reinit=True,
    )
    try:
        columns = list(rows[0]) if rows else ["job"]
        payload = {"report/jobs": wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in rows])}
        problem_columns, problem_rows = problems_table(jobs)
        payload["report/jobs_without_results"] = wandb.Table(columns=problem_columns, data=problem_rows)
        payload.update({f"report/{plot.stem}": wandb.Image(str(plot)) for plot in plots})
        run.log(payload)
        run.summary.update({"jobs": len(jobs), "reported": len(rows)})
        run_dir = Path(run.dir).parent
    finally:
        run.finish()
    return run_dir
