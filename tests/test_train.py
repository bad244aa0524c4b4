"""End-to-end training on the generated Real-IAD-format set, through the real Hydra configs."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from helpers.hydra_compose import compose_config
from helpers.overrides import tiny_data
from helpers.wandb_records import run_summary
from mtfcdd.model.build import build_module
from mtfcdd.model.checkpoint import load_pipeline
from mtfcdd.model.multitype_fcdd.network import map_scores
from mtfcdd.run.build import build_datamodule
from mtfcdd.train import run_task, train

FAST = ["debug=limit", "logger=csv", "data.num_workers=0"]


def tiny_overrides(root: Path) -> list[str]:
    return [*tiny_data(root), *FAST]


@pytest.mark.parametrize("mode", ["multi", "single"])
def test_fast_training_run_writes_checkpoints_and_results(tmp_path, tiny_realiad, mode):
    """The files a run writes hold what it computed: the tested checkpoint reproduces the tested network's maps and
    scores, and results.json holds the test metrics the run logged."""
    cfg = compose_config(tmp_path, [*tiny_overrides(tiny_realiad), f"mode={mode}"])
    metrics, objects = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    value = metrics[cfg.optimized_metric]
    assert value is not None and 0.0 <= value <= 1.0
    assert (run / "results.json").is_file() and (run / "results.md").is_file()
    results = json.loads((run / "results.json").read_text())
    assert metrics["test/i_auroc/mean"] == pytest.approx(results["mean"]["i_auroc"], rel=1e-6)
    tested = objects["checkpoints"][cfg.test_ckpt] or objects["checkpoints"]["last"]
    pipeline, saved_cfg = load_pipeline(tested)
    assert pipeline.num_types == (8 if mode == "multi" else 1) and saved_cfg.mode == mode
    # validation calibrated the per-type heatmap range stored in the checkpoint
    assert (pipeline.heat_max > pipeline.heat_min).all()
    test_set = objects["datamodule"].test_dataset
    images = torch.stack([test_set[i]["image"] for i in range(4)])
    with torch.no_grad():
        loaded, trained = pipeline(images), objects["model"].pipeline.cpu().eval()(images)
    torch.testing.assert_close(loaded.maps, trained.maps)
    torch.testing.assert_close(loaded.scores, trained.scores)


def test_last_checkpoint_holds_the_end_of_training_after_an_epoch_without_a_new_best(tmp_path, tiny_realiad):
    """The monitored value (the epoch, mode min) is best at epoch 0 and never again, and the step checkpoint writes
    last.ckpt at step 4 of 6: Lightning alone leaves it there; last.ckpt must hold the final step's weights."""
    cfg = compose_config(
        tmp_path,
        [
            *tiny_overrides(tiny_realiad),
            "trainer.max_epochs=2",
            "test=false",
            "callbacks.model_checkpoint.monitor=epoch",
            "callbacks.model_checkpoint.mode=min",
            "callbacks.step_checkpoint.every_n_train_steps=4",
        ],
    )
    _, objects = train(cfg)
    steps = cfg.trainer.limit_train_batches
    last = torch.load(objects["checkpoints"]["last"], map_location="cpu", weights_only=True)
    best = torch.load(objects["checkpoints"]["best"], map_location="cpu", weights_only=True)
    assert objects["trainer"].global_step == last["global_step"] == 2 * steps and best["global_step"] == steps
    trained = objects["model"].state_dict()
    for name, value in last["state_dict"].items():
        assert torch.equal(value, trained[name]), name


def test_backbone_weights_and_batchnorm_buffers_do_not_move(tmp_path, tiny_realiad):
    cfg = compose_config(tmp_path, [*tiny_overrides(tiny_realiad), "test=false"])
    from hydra.utils import instantiate

    from mtfcdd.model.build import build_module
    from mtfcdd.run.build import build_datamodule

    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    before = {k: v.clone() for k, v in module.net.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in module.net.head.state_dict().items()}
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[], max_steps=2, limit_val_batches=0)
    trainer.fit(module, datamodule=datamodule)
    after = module.net.backbone.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert any(not torch.equal(v, module.net.head.state_dict()[k]) for k, v in head_before.items())


def test_missing_dataset_stops_before_training_and_says_what_to_do(tmp_path):
    env = {**os.environ, "REALIAD_ROOT": str(tmp_path / "no-such-realiad")}
    proc = subprocess.run(
        [sys.executable, "-m", "mtfcdd.train", "alpha=0.2", "logger=none", f"paths.log_dir={tmp_path}/logs"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode != 0
    message = proc.stderr + proc.stdout
    assert str(tmp_path / "no-such-realiad") in message
    assert "data=synthetic" in message
    assert not list((tmp_path / "logs").rglob("*.ckpt"))


@pytest.mark.parametrize("override", ["alpha=0.3", "mode=dual"])
def test_bad_value_fails_before_any_work(tmp_path, override):
    proc = subprocess.run(
        [sys.executable, "-m", "mtfcdd.train", override, "logger=none", f"paths.log_dir={tmp_path}/logs"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    key = override.split("=")[0]
    assert f"{key}=" in proc.stderr and "choose one of" in proc.stderr
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").rglob("*.ckpt"))


@pytest.mark.slow
def test_multirun_gives_six_jobs_six_dirs_six_wandb_runs(tmp_path, tiny_realiad):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtfcdd.train",
            "-m",
            "alpha=0.1,0.2,0.4",
            "mode=single,multi",
            *tiny_data(tiny_realiad),
            "debug=limit",
            "data.num_workers=0",
            "logger=wandb",
            f"paths.log_dir={tmp_path}/logs",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "WANDB_SILENT": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    job_dirs = sorted(p for p in (tmp_path / "logs").glob("debug/*/multiruns/*/*") if p.is_dir())
    assert len(job_dirs) == 6, job_dirs
    names = {p.name.split("_", 1)[1] for p in job_dirs}
    assert names == {f"mtfcdd_alpha{a}_{m}" for a in (0.1, 0.2, 0.4) for m in ("single", "multi")}
    groups = set()
    for job in job_dirs:
        runs = list(job.glob("wandb/offline-run-*/run-*.wandb"))
        assert len(runs) == 1, job
        assert (job / "checkpoints" / "last.ckpt").is_file()
        run = run_summary(runs[0])
        groups.add(run["group"])
        _, _, alpha, mode = job.name.split("_")
        assert {f"alpha={alpha.removeprefix('alpha')}", f"mode={mode}"} <= set(run["tags"])  # the swept values, as tags
    assert groups == {f"default_{job_dirs[0].parent.name}"}  # the whole grid in one W&B group


def one_process_on_the_ranks_draws(cfg, ranks: int) -> dict[str, torch.Tensor]:
    """Head parameters after ``cfg.trainer.limit_train_batches`` steps of one process drawing ``ranks`` times the
    batch: rank r's share of each batch is its items ``r::ranks`` (the balanced sampler deals positions
    round-robin), forwarded on its own (the head's BatchNorm normalises over one rank's images, as unsynchronised
    DDP does), and the step follows the mean of the shares' mean losses (what DDP's gradient all-reduce averages)."""
    cfg.data.batch_size = ranks * cfg.data.batch_size
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    steps = cfg.trainer.limit_train_batches
    datamodule.epoch_draws = steps * cfg.data.batch_size  # the epoch's first draws: any epoch length begins with them
    optimizer = module.configure_optimizers()["optimizer"]
    module.train()
    for batch in itertools.islice(datamodule.train_dataloader(), steps):
        optimizer.zero_grad()
        shares = [
            module.loss(map_scores(module.pipeline.maps(batch["image"][r::ranks])), batch["label"][r::ranks])
            for r in range(ranks)
        ]
        (sum(shares) / ranks).backward()
        optimizer.step()
    return {name: value.detach() for name, value in module.named_parameters() if "head" in name}


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(tmp_path, tiny_realiad):
    """Lightning re-launches the script per rank with the Hydra overrides; both ranks train on disjoint draws, and
    the trained head equals one process's on the same draws.

    Why it must: both ranks draw one global balanced sequence and take the positions of their parity, each draw's
    augmentation is seeded by its position, so step s of rank r holds positions 2bs + r, 2bs + r + 2, ... (b the
    batch): the items r::2 of one process's step-s batch of 2b. DDP averages the two ranks' gradients of their mean
    losses. The head's BatchNorm normalises over each rank's b images (no sync_batchnorm on CPU), so the reference
    forwards each share on its own; a plain run with batch 2b normalises over all 2b and ends about 6e-4 away."""
    overrides = [*tiny_data(tiny_realiad), "debug=limit", "data.num_workers=0", "logger=csv"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtfcdd.train",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            *overrides,
            f"paths.log_dir={tmp_path}/logs",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "logs").glob("debug/*/runs/*"))
    assert len(runs) == 1, runs  # both ranks wrote into one run directory
    assert (runs[0] / "checkpoints" / "last.ckpt").is_file() and (runs[0] / "results.json").is_file()
    last = torch.load(runs[0] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    cfg = compose_config(tmp_path / "reference", overrides)
    assert last["global_step"] == cfg.trainer.limit_train_batches
    reference = one_process_on_the_ranks_draws(cfg, ranks=2)
    for name, value in reference.items():
        torch.testing.assert_close(
            last["state_dict"][name], value, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}"
        )
    # the test metrics of the 2 ranks (each testing half of the images) equal one process testing all of them, to
    # float32 precision: each rank forwards other batch shapes than the one process, and a convolution's float32
    # result depends on how the kernel blocks the batch (measured on an AMD EPYC Zen 5: heatmaps a few ulps apart, the
    # metrics 1e-8 to 6e-7 relative apart; on an Intel Xeon they came out equal). The metrics are sums over thousands
    # of pixels of such values, each good to about 1e-7 relative, so 1e-5 relative is what float32 can promise; a
    # real disagreement (a lost or doubled image, a wrong shard) moves a metric by 1e-3 or more.
    best = next((runs[0] / "checkpoints").glob("best_*.ckpt"))
    single_dir = tmp_path / "single"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtfcdd.evaluate",
            f"ckpt_path={best}",
            "trainer=cpu",
            "inference=eager",
            f"hydra.run.dir={single_dir}",
            f"paths.log_dir={tmp_path}/logs",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two_ranks = json.loads((runs[0] / "results.json").read_text())
    one_process = json.loads((single_dir / "results.json").read_text())
    assert two_ranks["counts"] == one_process["counts"] and two_ranks["counts"]["images"] > 0
    for name, entry in one_process["types"].items():
        for metric, value in entry.items():
            other = two_ranks["types"][name][metric]
            assert other == value if value is None else other == pytest.approx(value, rel=1e-5, abs=1e-7), (
                name,
                metric,
            )


@pytest.mark.slow
def test_deterministic_runs_give_bitwise_equal_metrics(tmp_path, tiny_realiad):
    """``trainer.deterministic=true`` and one seed: two runs (loader workers included) give identical metrics."""
    outcomes = []
    for name in ("first", "second"):
        cfg = compose_config(
            tmp_path / name,
            [*tiny_overrides(tiny_realiad), "trainer.deterministic=true", "data.num_workers=2", "trainer.max_epochs=2"],
        )
        run_task(cfg)
        results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
        # each names its own run's checkpoint file (another path, and the file holds the run's paths: another hash)
        assert results.pop("checkpoints")["checkpoint"]["path"].startswith(str(Path(cfg.paths.output_dir).resolve()))
        head = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        outcomes.append((results, {k: v for k, v in head.items() if k.startswith("net.head.")}))
    (first_results, first_head), (second_results, second_head) = outcomes
    assert first_results == second_results  # every metric, written with full float precision (repr round trip)
    assert all(torch.equal(value, second_head[key]) for key, value in first_head.items())
    assert "i_auroc" in first_results["mean"]


@pytest.mark.slow
def test_submitit_local_launcher_runs_each_job_as_its_own_process(tmp_path, tiny_realiad):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtfcdd.train",
            "-m",
            "hydra/launcher=submitit_local",
            "alpha=0.1,0.2",
            *tiny_data(tiny_realiad),
            "debug=default",
            "logger=wandb",
            f"paths.log_dir={tmp_path}/logs",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "WANDB_SILENT": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "logs").glob("debug/default/multiruns/*")
    job_dirs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in job_dirs] == ["0_mtfcdd_alpha0.1_multi", "1_mtfcdd_alpha0.2_multi"]
    for job, alpha in zip(job_dirs, ("0.1", "0.2")):
        assert (job / "checkpoints" / "last.ckpt").is_file() and (job / "results.json").is_file()
        (run_file,) = job.glob("wandb/offline-run-*/run-*.wandb")
        run = run_summary(run_file)  # one W&B group for the sweep; the swept value as a tag and as config
        assert run["group"] == f"default_{sweep_dir.name}"
        assert f"alpha={alpha}" in run["tags"] and "debug=default" in run["tags"]
        assert run["config"]["overrides"]["alpha"] == alpha and "data.root" not in run["config"]["overrides"]
    # each job ran in a process of its own, its stdout in the sweep's .submitit/<job id>/ folder
    stdouts = sorted(sweep_dir.glob(".submitit/*/*_0_log.out"))
    assert len(stdouts) == 2
    assert {line for out in stdouts for line in out.read_text().splitlines() if line.startswith("run directory:")} == {
        f"run directory: {job}" for job in job_dirs
    }


def test_paper_run_trains_on_the_whole_split_and_tests_the_last_checkpoint(tmp_path, tiny_realiad):
    """experiment=paper's pipeline (no hold-out, no selection) on the tiny set with the debug backbone."""
    import json

    from mtfcdd.run.status import read_status

    cfg = compose_config(tmp_path, ["experiment=paper", *tiny_overrides(tiny_realiad)])
    assert cfg.data.val_fraction == 0 and cfg.test_ckpt == "last"
    assert run_task(cfg) is None  # no validation metric to return
    run = Path(cfg.paths.output_dir)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    results = json.loads((run / "results.json").read_text())
    assert results["protocol"] == "paper"
    assert not list((run / "heatmaps").glob("val_epoch*.png"))  # nothing held out, nothing validated
    assert read_status(run)["state"] == "finished"


def test_a_failing_run_records_its_error_in_status_json(tmp_path):
    from mtfcdd.core.errors import UserError
    from mtfcdd.run.status import read_status

    cfg = compose_config(tmp_path, [f"data.root={tmp_path / 'no-such-realiad'}", "logger=none"])
    with pytest.raises(UserError):
        run_task(cfg)
    status = read_status(cfg.paths.output_dir)
    assert status["state"] == "failed" and "no-such-realiad" in status["error"]
