"""`python -m mtfcdd.report`: rows checked against each job's results.json, jobs without results listed, plots,
and the W&B summary run; the slow test reports on a real 4-job synthetic multirun."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from test_metrics_tables import results_for

from helpers.hydra_compose import compose_config
from helpers.overrides import tiny_data
from helpers.wandb_offline import run_info
from mtfcdd.metrics.evaluator import METRICS
from mtfcdd.metrics.tables import write_result_files
from mtfcdd.report.__main__ import build_report, main
from mtfcdd.report.jobs import ReportError
from mtfcdd.run.status import write_status
from mtfcdd.sampling.balance import AUTO_BALANCE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _csv_value(text: str) -> float | None:
    return None if text == "" else float(text)


def check_rows_against_results(report_dir: Path, job_dirs: list[Path]) -> list[dict]:
    """Every job with results.json has exactly one report.csv row whose numbers are that file's."""
    with open(report_dir / "report.csv", newline="") as handle:
        rows = {row["job"]: row for row in csv.DictReader(handle)}
    for job in job_dirs:
        results = json.loads((job / "results.json").read_text())
        row = rows.pop(str(job.relative_to(report_dir)))
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert float(row["alpha"]) == config.alpha and row["mode"] == config.mode == results["mode"]
        assert int(row["seed"]) == config.seed and row["backbone"] == config.model.backbone.name
        assert row["balance"] == {"multi": "types", "single": AUTO_BALANCE["single"]}[config.mode]
        assert int(row["test_images"]) == results["counts"]["images"]
        for metric in METRICS:
            assert _csv_value(row[metric]) == pytest.approx(results["mean"][metric], nan_ok=True)
            if results["mode"] == "multi":
                for name, entry in results["types"].items():
                    assert _csv_value(row[f"{metric}/{name}"]) == pytest.approx(entry[metric])
        classification = results["type_classification"]
        expected = classification["accuracy"] if classification else None
        assert _csv_value(row["type_accuracy"]) == pytest.approx(expected)
    assert not rows, f"rows without a job: {sorted(rows)}"
    return rows


def _fake_job(sweep: Path, name: str, tmp_path: Path, overrides: list[str]) -> Path:
    """A run directory as Hydra leaves it: its saved config (the real composed one)."""
    cfg = compose_config(tmp_path / name, overrides)
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
    return job


def test_report_rows_match_results_and_unfinished_jobs_are_listed(tmp_path):
    sweep = tmp_path / "multirun"
    finished = []
    for num, (alpha, mode) in enumerate([(0.1, "multi"), (0.2, "multi"), (0.2, "single")]):
        job = _fake_job(sweep, f"{num}_alpha={alpha}_mode={mode}", tmp_path, [f"alpha={alpha}", f"mode={mode}"])
        write_result_files(results_for(mode), job)
        write_status(job, "finished")
        finished.append(job)
    failed = _fake_job(sweep, "3_alpha=0.4_mode=multi", tmp_path, ["alpha=0.4"])
    write_status(failed, "failed", error="RuntimeError: out of memory")
    running = _fake_job(sweep, "4_alpha=0.4_mode=single", tmp_path, ["alpha=0.4", "mode=single"])
    write_status(running, "running")  # this test's own process: alive
    _fake_job(sweep, "5_alpha=0.1_mode=single", tmp_path, ["alpha=0.1", "mode=single"])  # started, nothing else

    report = build_report([sweep], sweep, use_wandb="off")
    assert report["wandb_run"] is None
    check_rows_against_results(sweep, finished)
    markdown = (sweep / "report.md").read_text()
    assert "6 jobs: 3 finished, 1 failed, 1 running, 1 unknown; 3 with test results" in markdown
    assert "| 3_alpha=0.4_mode=multi | failed | RuntimeError: out of memory |" in markdown
    assert "| 4_alpha=0.4_mode=single | running | pid" in markdown
    assert "| 5_alpha=0.1_mode=single | unknown |" in markdown
    pit = results_for("multi")["types"]["pit"]["i_auroc"]
    assert f"| Pit | {100 * pit:.1f} | {100 * pit:.1f} |" in markdown  # both multi jobs, per-type I-AUROC table
    plots = sorted(p.name for p in (sweep / "plots").iterdir())
    assert plots == ["mean_vs_alpha.png", "per_type_vs_alpha_inception_resnet_v2.png"]
    for name in plots:
        assert (sweep / "plots" / name).read_bytes()[:8] == PNG_MAGIC
        assert f"](plots/{name})" in markdown


def test_the_summary_run_goes_where_the_jobs_logged(tmp_path):
    from mtfcdd.report.jobs import load_jobs
    from mtfcdd.report.wandb_summary import wandb_settings

    sweep = tmp_path / "sweep"
    target = {"project": "mtfcdd", "entity": None, "group": "paper_2026-11-29_10-00-00", "offline": True}
    for num in range(3):
        job = _fake_job(sweep, f"{num}_alpha=0.2_mode=multi", tmp_path, ["alpha=0.2"])
        write_status(job, "finished", wandb=target)  # as resolved inside the job (the config holds the resolver)
    assert wandb_settings(load_jobs([sweep])) == target
    plain = _fake_job(tmp_path / "single", "run", tmp_path, ["logger=csv"])
    write_status(plain, "finished", wandb=None)
    assert wandb_settings(load_jobs([plain])) is None


def test_a_job_whose_process_is_gone_is_reported_as_died(tmp_path):
    job = _fake_job(tmp_path / "sweep", "0_alpha=0.2_mode=multi", tmp_path, [])
    write_status(job, "running")
    status = json.loads((job / "status.json").read_text())
    status["pid"] = 2**22 + 12345  # above the usual pid range: no such process
    (job / "status.json").write_text(json.dumps(status))
    report = build_report([job], tmp_path / "out", use_wandb="off")
    assert [j.state for j in report["jobs"]] == ["died"] and report["rows"] == []
    assert "No job has test results yet." in (tmp_path / "out" / "report.md").read_text()


def test_bad_directories_fail_clearly(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere is not a directory" in capsys.readouterr().err
    with pytest.raises(ReportError, match="no run directory"):
        build_report([tmp_path], tmp_path)


@pytest.mark.slow
def test_report_of_a_real_four_job_sweep_with_a_wandb_summary_run(tmp_path, tiny_realiad):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtfcdd.train",
            "-m",
            "alpha=0.1,0.2",
            "mode=single,multi",
            *tiny_data(tiny_realiad),
            "debug=limit",
            "data.num_workers=0",
            "logger=wandb",
            f"paths.log_dir={tmp_path}/logs",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "WANDB_SILENT": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(jobs) == 4
    proc = subprocess.run(
        [sys.executable, "-m", "mtfcdd.report", str(sweep)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "WANDB_SILENT": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 of 4 jobs reported" in proc.stdout
    check_rows_against_results(sweep, jobs)
    # the summary run: offline, in the jobs' group, holding the table and every plot
    runs = list((sweep / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    info = run_info(runs[0])
    job_groups = {run_info(next(job.glob("wandb/offline-run-*"))).run_group for job in jobs}
    assert job_groups == {f"default_{sweep.name}"}  # one group for the sweep's jobs
    assert (info.run_group, info.job_type, info.project) == (f"default_{sweep.name}", "report", "mtfcdd")
    table_files = [
        p
        for p in runs[0].glob("files/media/table/report/jobs_*.table.json")
        if re.fullmatch(r"jobs_\d+_[0-9a-f]+\.table\.json", p.name)
    ]
    assert len(table_files) == 1
    table = json.loads(table_files[0].read_text())
    assert len(table["data"]) == 4 and "i_auroc" in table["columns"]
    images = {p.name.rsplit("_", 2)[0] for p in runs[0].glob("files/media/images/report/*.png")}
    assert images == {"mean_vs_alpha", "per_type_vs_alpha_tf_efficientnet_lite0"}


def _label_job(sweep: Path, name: str, tmp_path: Path, overrides: list[str], results: dict, per_type: int) -> Path:
    """A finished data=folder job: its config, results and a split with ``per_type`` defective training images of
    each type (and good ones, which do not count)."""
    job = _fake_job(sweep, name, tmp_path, ["data=folder", "data.root=/parts", *overrides])
    config = OmegaConf.load(job / ".hydra" / "config.yaml")
    config.paths.output_dir = str(job)  # as inside the job: data.split_dir is <job>/split
    OmegaConf.save(config, job / ".hydra" / "config.yaml")
    records = [{"anomaly_class": "good", "image_path": f"good/{k}.png"} for k in range(40)]
    records += [{"anomaly_class": t, "image_path": f"{t}/{k}.png"} for t in ("crack", "dent") for k in range(per_type)]
    split = {"meta": {"normal_class": "good"}, "train": records[:-1], "validation": [], "test": []}
    (job / "split" / "realiad_jsons").mkdir(parents=True)
    (job / "split" / "realiad_jsons" / "part.json").write_text(json.dumps(split))
    write_result_files(results, job)
    write_status(job, "finished")
    return job


def test_a_label_count_sweep_gets_its_plot_and_table_with_patchcore_as_reference(tmp_path):
    sweep = tmp_path / "multirun"
    expected = {}
    for num, (count, per_type) in enumerate([(5, 5), (10, 10), ("null", 33)]):
        results = results_for("multi")
        results["mean"]["i_auroc"] = 0.5 + 0.1 * num  # distinct numbers per job: the table must take each job's own
        results["type_classification"]["accuracy"] = 0.6 + 0.1 * num
        name = f"{num}_mtfcdd_labels{count}"
        _label_job(sweep, name, tmp_path, [f"data.train_defects_per_type={count}"], results, per_type)
        expected[name] = results
    patchcore = results_for("single")
    _label_job(sweep, "0_patchcore_labelsNone", tmp_path, ["model=patchcore"], patchcore, 33)
    build_report([sweep], sweep, use_wandb="off")
    markdown = (sweep / "report.md").read_text()
    section = markdown.split("## Against labelled defect images per type\n\n")[1].split("\n\n")[0].splitlines()
    metrics = "typed mean I-AUROC | typed mean AUPRO | any-defect I-AUROC | type accuracy"
    assert section[0] == f"| labelled images per type | job | {metrics} |"
    labels = [line.split(" | ")[0].removeprefix("| ") for line in section[2:]]
    # "all": the most defective training images of one type in the job's split (33 dent, 32 crack: the last dropped)
    assert labels == ["5", "10", "all (33)", "none (PatchCore)"]
    for line, (name, results) in zip(section[2:], expected.items()):
        cells = line.split(" | ")
        assert cells[1] == name
        numbers = [results["mean"]["i_auroc"], results["mean"]["aupro"], results["any_defect"]["i_auroc"]]
        numbers.append(results["type_classification"]["accuracy"])
        assert [float(c.strip(" |")) for c in cells[2:]] == [pytest.approx(100 * v, abs=0.05) for v in numbers]
    reference = section[-1].split(" | ")
    assert float(reference[4]) == pytest.approx(100 * patchcore["any_defect"]["i_auroc"], abs=0.05)
    assert reference[5].strip(" |") == "n/a"  # PatchCore has no type channels
    plot = sweep / "plots" / "metrics_vs_labels.png"
    assert plot.read_bytes()[:8] == PNG_MAGIC and "](plots/metrics_vs_labels.png)" in markdown


def test_no_label_plot_where_the_jobs_do_not_differ_by_labels(tmp_path):
    sweep = tmp_path / "multirun"
    for num in range(2):
        _label_job(sweep, f"{num}_mtfcdd_labels5", tmp_path, ["data.train_defects_per_type=5"], results_for(), 5)
    build_report([sweep], sweep, use_wandb="off")
    assert not (sweep / "plots" / "metrics_vs_labels.png").exists()
    assert "labelled defect images" not in (sweep / "report.md").read_text()
