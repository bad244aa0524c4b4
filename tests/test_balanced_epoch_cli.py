"""The balanced-epoch CLI (a row of Table 2) and the Lightning callback that sets the epoch length."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from mtfcdd.balanced_epoch import main
from mtfcdd.sampling.coupon import expected_draws
from mtfcdd.sampling.epoch_callback import BalancedEpochLength
from mtfcdd.sampling.sampler import BalancedClassSampler

PROJECT_ROOT = Path(__file__).resolve().parents[1]
COUNTS = [54066, 500, 400, 600, 300, 900, 474, 300, 300]


# ---------------------------------------------------------------- CLI


def test_table_row(capsys):
    assert main(["--counts", ",".join(map(str, COUNTS)), "--batch-size", "32"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:4] == ["method", "alpha", "total", "images"]
    cells = row.split()
    expected = expected_draws(COUNTS).mean
    assert cells[:4] == ["exact", "-", "57,840", "9"]
    assert float(cells[4].replace(",", "")) == pytest.approx(expected, abs=0.01)
    assert float(cells[6].replace(",", "")) == pytest.approx(expected / 32, abs=0.01)
    assert cells[7:9] == ["1,807.5", f"{expected / 57840:.2f}"]


def test_json_with_both_methods(capsys):
    assert main(["--counts", "30,5,12", "--batch-size", "4", "--method", "both", "--trials", "4000", "--json"]) == 0
    exact, mc = json.loads(capsys.readouterr().out)
    assert (exact["method"], mc["method"]) == ("exact", "mc")
    assert exact["counts"] == mc["counts"] == [30, 5, 12]
    assert exact["total_images"] == 47 and exact["classes"] == 3 and exact["standard_iterations"] == 47 / 4
    assert exact["draws"] == pytest.approx(expected_draws([30, 5, 12]).mean)
    assert exact["batches"] == pytest.approx(exact["draws"] / 4)
    assert exact["draws_stderr"] == 0 and mc["draws_stderr"] > 0
    assert abs(mc["draws"] - exact["draws"]) < 4 * mc["draws_stderr"]


def test_runs_as_a_module():
    completed = subprocess.run(
        [sys.executable, "-m", "mtfcdd.balanced_epoch", "--counts", "1,1,1", "--batch-size", "1", "--json"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(completed.stdout)[0]["draws"] == pytest.approx(5.5)  # 3 x H_3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch-size", "32"], "one of the arguments --counts --alpha is required"),
        (["--counts", "5,x"], "argument --counts: expected comma-separated positive integers"),
        (["--counts", "5,2.5"], "argument --counts: expected comma-separated positive integers"),
        (["--counts", "5,0,3"], "every class count must be positive"),
        (["--counts", "5,3", "--batch-size", "0"], "argument --batch-size: expected a positive integer"),
        (["--counts", "5,3", "--method", "quad"], "argument --method: invalid choice"),
        (["--counts", "5,3", "--method", "mc", "--trials", "1"], "trials must be an integer >= 2"),
        (["--counts", "5,3", "--alpha", "0.2"], "not allowed with argument"),
        (["--counts", "5,3", "--data-root", "x"], "--data-root and --categories go with --alpha"),
        (["--alpha", "0.2"], "--alpha needs --data-root"),
        (["--alpha", "0.2", "--data-root", "x", "--categories", "a,,b"], "argument --categories"),
    ],
)
def test_bad_input_exits_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_counts_come_from_the_training_index(monkeypatch, capsys, tmp_path):
    """--alpha counts records per sampler class (type index, normal = 8) of mtfcdd.data.realiad.load_split."""
    calls = []
    per_type = {-1: 40, 0: 6, 3: 2, 7: 9}

    def load_split(root, **kwargs):
        calls.append((root, kwargs))
        return [types.SimpleNamespace(type_index=index) for index, count in per_type.items() for _ in range(count)]

    monkeypatch.setitem(sys.modules, "mtfcdd.data.realiad", types.SimpleNamespace(load_split=load_split))
    argv = ["--alpha", "0.4", "--data-root", str(tmp_path), "--categories", "pcb,usb", "--batch-size", "8", "--json"]
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)
    options = {"split": "train", "json_set": "fuiad", "alpha": 0.4, "resolution": "realiad_256"}
    assert calls == [(tmp_path, {**options, "categories": ["pcb", "usb"]})]
    assert row["counts"] == [6, 2, 9, 40] and row["alpha"] == 0.4
    assert row["draws"] == pytest.approx(expected_draws([6, 2, 9, 40]).mean)


def test_unreadable_index_is_reported(monkeypatch, capsys, tmp_path):
    def load_split(root, **kwargs):
        raise FileNotFoundError(f"{root}/realiad_jsons_fuiad_0.4 not found")

    monkeypatch.setitem(sys.modules, "mtfcdd.data.realiad", types.SimpleNamespace(load_split=load_split))
    with pytest.raises(SystemExit) as exit_info:
        main(["--alpha", "0.4", "--data-root", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "realiad_jsons_fuiad_0.4 not found" in capsys.readouterr().err


def write_index(root: Path, category: str, labels: list[str]) -> None:
    """A Real-IAD fuiad_0.2 training index for ``category`` with one image per entry of ``labels`` (empty files)."""
    records = []
    for number, label in enumerate(labels):
        folder = f"OK/S{number:04d}" if label == "OK" else f"NG/{label}/S{number:04d}"
        stem = f"{category}_{number:04d}_{'OK' if label == 'OK' else 'NG_' + label}_C1_20231021130235"
        mask = None if label == "OK" else f"{folder}/{stem}.png"
        image = f"{folder}/{stem}.jpg"
        records.append({"category": category, "anomaly_class": label, "image_path": image, "mask_path": mask})
        for relative in filter(None, (image, mask)):
            (root / "realiad_256" / category / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / "realiad_256" / category / relative).touch()
    index = {"meta": {"prefix": f"{category}/", "normal_class": "OK"}, "train": records, "test": []}
    (root / "realiad_jsons_fuiad_0.2").mkdir(parents=True, exist_ok=True)
    (root / "realiad_jsons_fuiad_0.2" / f"{category}.json").write_text(json.dumps(index))


def test_counts_from_a_real_format_index(tmp_path, capsys):
    write_index(tmp_path, "pcb", ["OK"] * 7 + ["HS"] * 2 + ["AK"])
    write_index(tmp_path, "usb", ["OK"] * 5 + ["HS", "ZW", "ZW"])
    write_index(tmp_path, "toy", ["OK"] * 50 + ["BX"] * 9)  # not requested
    assert main(["--alpha", "0.2", "--data-root", str(tmp_path), "--categories", "pcb,usb", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["counts"] == [1, 3, 2, 12]  # AK, HS, ZW, normal (sampler class order)
    assert row["draws"] == pytest.approx(expected_draws([1, 3, 2, 12]).mean)
    args = ["--alpha", "0.2", "--data-root", str(tmp_path), "--categories", "pcb,usb", "--balance", "binary", "--json"]
    assert main(args) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["counts"] == [6, 12]  # any defect, normal
    assert row["draws"] == pytest.approx(expected_draws([6, 12]).mean)


def test_missing_dataset_root_is_reported(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--alpha", "0.2", "--data-root", str(tmp_path / "absent")])
    assert exit_info.value.code == 2
    assert f"Real-IAD root {tmp_path / 'absent'} does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- callback


class TinyDataModule(L.LightningDataModule):
    """Items of classes ``class_of`` (class 2 has none); the train loader needs ``epoch_draws`` already set."""

    def __init__(self, class_of: np.ndarray, batch_size: int) -> None:
        super().__init__()
        self.save_hyperparameters("batch_size", logger=False)
        self.class_of = class_of
        self.epoch_draws: int | None = None
        self.loaders_built = 0

    def train_class_counts(self) -> list[int]:
        return np.bincount(self.class_of, minlength=9).tolist()

    def train_dataloader(self) -> DataLoader:
        assert self.epoch_draws is not None, "train_dataloader() was requested before the epoch length was set"
        self.loaders_built += 1
        dataset = TensorDataset(torch.randn(len(self.class_of), 2), torch.arange(len(self.class_of)))
        sampler = BalancedClassSampler(self.class_of, self.epoch_draws)
        return DataLoader(dataset, batch_size=self.hparams.batch_size, sampler=sampler)


class TinyModel(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.seen: dict[int, list[int]] = {}  # dataset indices drawn, per epoch

    def training_step(self, batch, batch_index):
        inputs, indices = batch
        self.seen.setdefault(self.current_epoch, []).extend(indices.tolist())
        return self.layer(inputs).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


QUOTAS = [5, 3, 2, 1, 6, 2, 4, 40]  # fit()'s class sizes in sampler class order, the empty class 2 dropped


def fit(
    tmp_path: Path, callback: BalancedEpochLength, batch_size: int = 16, epochs: int = 1
) -> tuple[TinyModel, TinyDataModule, L.Trainer]:
    sizes = {8: 40, 0: 5, 1: 3, 3: 2, 4: 1, 5: 6, 6: 2, 7: 4}  # class 2 empty: dropped from the quotas
    class_of = np.random.default_rng(0).permutation(np.concatenate([np.full(n, c) for c, n in sizes.items()]))
    datamodule = TinyDataModule(class_of, batch_size)
    model = TinyModel()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(tmp_path, name="run"),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, datamodule=datamodule)
    return model, datamodule, trainer


def test_callback_sets_the_epoch_length_before_the_loader_is_built(tmp_path, capsys):
    model, datamodule, trainer = fit(tmp_path, BalancedEpochLength(), epochs=2)
    expected = expected_draws(QUOTAS).mean
    assert datamodule.epoch_draws == math.ceil(expected)
    assert datamodule.loaders_built == 1
    assert trainer.num_training_batches == math.ceil(math.ceil(expected) / 16)
    assert [len(model.seen[epoch]) for epoch in (0, 1)] == [math.ceil(expected)] * 2
    # Lightning calls set_epoch: each epoch draws its own sequence
    sampler = BalancedClassSampler(datamodule.class_of, datamodule.epoch_draws)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        assert model.seen[epoch] == list(sampler)
    assert model.seen[0] != model.seen[1]
    assert f"mu_T = {expected:,.2f} draws ({math.ceil(expected):,} per epoch)" in capsys.readouterr().out

    log_dir = Path(trainer.logger.log_dir)
    with open(log_dir / "metrics.csv") as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("balanced_epoch/draws")]
    assert len(logged) == 1 and logged[0]["step"] == "0"
    assert float(logged[0]["balanced_epoch/draws"]) == pytest.approx(expected)
    assert float(logged[0]["balanced_epoch/batches"]) == pytest.approx(expected / 16)
    assert float(logged[0]["balanced_epoch/standard_epochs"]) == pytest.approx(expected / sum(QUOTAS))
    hparams = yaml.safe_load((log_dir / "hparams.yaml").read_text())
    assert hparams["balanced_epoch/method"] == "exact" and hparams["balanced_epoch/classes"] == 8


def test_callback_with_monte_carlo(tmp_path):
    callback = BalancedEpochLength(method="mc", trials=3000, seed=4)
    _, datamodule, _ = fit(tmp_path, callback, batch_size=8)
    mc = expected_draws(QUOTAS, method="mc", trials=3000, seed=4)
    assert callback.result.estimate == mc
    assert datamodule.epoch_draws == math.ceil(mc.mean)


def test_callback_needs_a_datamodule_with_class_counts(tmp_path):
    loader = DataLoader(TensorDataset(torch.randn(8, 2), torch.zeros(8)), batch_size=4)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        callbacks=[BalancedEpochLength()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(TypeError, match="train_class_counts"):
        trainer.fit(TinyModel(), train_dataloaders=loader)


def test_callback_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="method must be one of exact, mc"):
        BalancedEpochLength(method="simulate")
