"""``python -m mtfcdd.report DIR [DIR ...] [--out OUT] [--wandb auto|on|off]`` (plain argparse).

Reads every job under a Hydra multirun directory (or the run directories given) and writes into OUT (default:
the first DIR): ``report.md``, ``report.csv`` and ``plots/*.png``; with W&B (``auto``: when the jobs logged
to W&B) the same table and plots go to one summary run in the jobs' W&B group.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtfcdd.core.errors import UserError
from mtfcdd.report.files import markdown, write_csv, write_markdown
from mtfcdd.report.jobs import job_row, load_jobs, type_colours, type_names
from mtfcdd.report.plots import write_plots
from mtfcdd.report.wandb_summary import log_summary_run, wandb_settings
from mtfcdd.run.help import argparse_epilog


def build_report(paths: list[Path], out_dir: Path, use_wandb: str = "auto") -> dict:
    """Write the report of the jobs under ``paths`` into ``out_dir``; returns what was written
    (``jobs``, ``rows``, ``files``, ``wandb_run``: the summary run's directory or None)."""
    jobs = load_jobs(paths)
    types = type_names(jobs)
    rows = [job_row(job, types) for job in jobs if job.reported]
    files = [write_csv(rows, out_dir / "report.csv")]
    plots = write_plots(rows, types, out_dir, type_colours(jobs, types))
    files += [write_markdown(markdown(jobs, rows, types, plots, out_dir), out_dir / "report.md"), *plots]
    wandb_run = None
    settings = wandb_settings(jobs)
    if use_wandb == "on" and settings is None:
        raise UserError("--wandb on: none of the jobs logged to W&B (no logger.wandb in their configs)")
    if use_wandb != "off" and settings is not None:
        wandb_run = log_summary_run(settings, jobs, rows, plots, out_dir)
    return {"jobs": jobs, "rows": rows, "files": files, "wandb_run": wandb_run}


def main(argv: list[str] | None = None) -> int:
    """Write the report of the given directories; returns 0, or 2 after printing a user error."""
    parser = argparse.ArgumentParser(
        prog="python -m mtfcdd.report",
        description=__doc__.split("\n\n")[1].replace("``", ""),
        epilog=argparse_epilog("report"),
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="a multirun directory, or run directories")
    parser.add_argument("--out", type=Path, help="where to write the report (default: the first DIR)")
    parser.add_argument(
        "--wandb",
        choices=("auto", "on", "off"),
        default="auto",
        help="summary run in the jobs' W&B group (auto: when the jobs logged to W&B)",
    )
    args = parser.parse_args(argv)
    try:
        report = build_report(args.dirs, args.out or args.dirs[0], args.wandb)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for job in report["jobs"]:
        if not job.reported:
            print(f"not in the table: {job.name} ({job.state}{': ' + job.detail if job.detail else ''})")
    print(f"{len(report['rows'])} of {len(report['jobs'])} jobs reported")
    for path in report["files"]:
        print(f"wrote {path}")
    if report["wandb_run"] is not None:
        print(f"W&B summary run: {report['wandb_run']}  (upload with: wandb sync {report['wandb_run']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
