"""RealIADDataModule: set-up, validation hold-out by sample, subsets, summary, loaders and argument checks."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_realiad_index import LAYOUT, expected_counts, write_realiad

from mtfcdd.core.config import ConfigError
from mtfcdd.core.defect_types import DEFECT_CODES
from mtfcdd.data.datamodule import RealIADDataModule, split_by_sample, stratified_subset
from mtfcdd.data.realiad import Record, load_split
from mtfcdd.data.summary import format_summary_table, summary_rows
from mtfcdd.data.synthetic.datamodule import SyntheticRealIADDataModule
from mtfcdd.resume.loader import ResumableLoader, SeededDraws
from mtfcdd.sampling.balance import class_index
from mtfcdd.sampling.sampler import BalancedClassSampler, EvaluationShardSampler

FAST = {"image_size": 16, "num_workers": 0, "batch_size": 4}
NORMAL = len(DEFECT_CODES)
"""The sampler class of normal images with Real-IAD's 8 types."""


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_realiad(tmp_path_factory.mktemp("realiad"))


def _module(root, **kwargs) -> RealIADDataModule:
    dm = RealIADDataModule(root, **{"alpha": 0.2, **FAST, **kwargs})
    dm.setup("fit")
    return dm


def _classes(records: list[Record]) -> Counter:
    return Counter(class_index(r.type_index, NORMAL) for r in records)


def test_setup_splits_train_into_train_and_val_by_sample_and_keeps_test(root, capsys):
    dm = _module(root, val_fraction=0.3)
    train, val, test = dm.train_dataset.records, dm.val_dataset.records, dm.test_dataset.records
    full_train = load_split(root, split="train")
    assert sorted(map(str, (r.image for r in train + val))) == sorted(str(r.image) for r in full_train)
    assert not {r.sample for r in train} & {r.sample for r in val}
    assert test == load_split(root, split="test")
    # every class with >= 2 training samples appears in both train and val
    samples_per_class = Counter()
    for sample in {
        r.sample: min(class_index(x.type_index, NORMAL) for x in full_train if x.sample == r.sample) for r in full_train
    }.items():
        samples_per_class[sample[1]] += 1
    for klass, count in samples_per_class.items():
        assert (klass in _classes(val)) == (count >= 2) and klass in _classes(train)
    assert "mask" in dm.val_dataset[0] and "mask" not in dm.train_dataset[0]
    printed = capsys.readouterr().out
    assert "Images per split and class" in printed and format_summary_table(dm.summary_rows) in printed


def test_setup_is_idempotent(root, monkeypatch):
    dm = _module(root)
    dataset = dm.train_dataset
    monkeypatch.setattr("mtfcdd.data.datamodule.load_splits", lambda *a, **k: pytest.fail("index loaded twice"))
    dm.setup("validate")
    dm.setup("test")
    assert dm.train_dataset is dataset


def test_validation_split_is_deterministic_in_the_seed(root):
    records = load_split(root, split="train")
    first = split_by_sample(records, 0.4, seed=0, num_types=NORMAL)[1]
    assert first == split_by_sample(records, 0.4, seed=0, num_types=NORMAL)[1]
    others = [split_by_sample(records, 0.4, seed=s, num_types=NORMAL)[1] for s in range(1, 6)]
    assert any(other != first for other in others)
    assert split_by_sample(records, 0.0, seed=0, num_types=NORMAL) == (records, [])


def test_single_sample_class_stays_in_training(root):
    records = load_split(root, split="train")
    train, val = split_by_sample(records, 0.9, seed=0, num_types=NORMAL)
    per_sample = Counter(min(_classes([x for x in records if x.sample == s])) for s in {r.sample for r in records})
    single = [klass for klass, n in per_sample.items() if n == 1]
    assert single and all(klass in _classes(train) and klass not in _classes(val) for klass in single)


def test_stratified_subset_proportions():
    def records(counts: dict[int, int]) -> list[Record]:
        return [
            Record(
                image=f"{k}_{i}",
                mask=None,
                category="c",
                anomaly_class="x",
                type_index=k if k < 8 else -1,
                sample=f"{k}_{i}",
                view="C1",
            )
            for k, n in counts.items()
            for i in range(n)
        ]

    pool = records({0: 50, 3: 30, 8: 20})
    subset = stratified_subset(pool, 10, seed=0, num_types=NORMAL)
    assert len(subset) == 10 and _classes(subset) == {0: 5, 3: 3, 8: 2}
    assert subset == stratified_subset(pool, 10, seed=0, num_types=NORMAL)
    assert [pool.index(r) for r in subset] == sorted(pool.index(r) for r in subset)
    # one image per class first, the rest in proportion (largest remainder): 1 + 97 * (99, 1, 0) / 100 -> 97 + 1
    skewed = records({0: 100, 1: 2, 2: 1})
    assert _classes(stratified_subset(skewed, 5, seed=1, num_types=NORMAL)) == {0: 3, 1: 1, 2: 1}
    assert stratified_subset(skewed, None, seed=0, num_types=NORMAL) == skewed
    assert sum(_classes(stratified_subset(skewed, 2, seed=0, num_types=NORMAL)).values()) == 2


def test_max_images_subsets_are_stratified_and_deterministic(root):
    dm = _module(root, val_fraction=0.5, test_max_images=9, val_max_images=4)
    test = dm.test_dataset.records
    assert len(test) == 9 and set(_classes(test)) == set(_classes(load_split(root, split="test")))
    assert len(dm.val_dataset) == 4
    again = _module(root, val_fraction=0.5, test_max_images=9, val_max_images=4)
    assert again.test_dataset.records == test and again.val_dataset.records == dm.val_dataset.records


def test_summary_counts_each_split_and_class(root):
    dm = _module(root, val_fraction=0.0, summary_by_category=True)
    rows = {(row["split"], row["category"]): row for row in dm.summary_rows}
    assert list(rows[("train", "all")]) == ["split", "category", *DEFECT_CODES, "OK", "total"]
    for split in ("train", "test"):
        expected = expected_counts(split)
        row = rows[(split, "all")]
        assert {k: row[k] for k in (*DEFECT_CODES, "OK") if row[k]} == expected
        assert row["total"] == sum(expected.values())
        for category in LAYOUT:
            assert rows[(split, category)]["total"] == sum(expected_counts(split, [category]).values())
    assert rows[("val", "all")]["total"] == 0
    table = format_summary_table(dm.summary_rows).splitlines()
    assert table[0].split() == list(rows[("train", "all")]) and len(table) == 2 + len(dm.summary_rows)
    assert len({len(line) for line in table[:2]}) == 1


def test_train_class_counts_and_num_types(root):
    dm = _module(root, val_fraction=0.0)
    counts = dm.train_class_counts()
    expected = expected_counts("train")
    assert len(counts) == 9 and counts[NORMAL] == expected["OK"]
    assert {DEFECT_CODES[i]: n for i, n in enumerate(counts[:8]) if n} == {
        k: v for k, v in expected.items() if k != "OK"
    }
    assert dm.num_types == 8 and _module(root, mode="single").num_types == 1


def test_train_loader_draws_balanced_epochs_of_epoch_draws(root, caplog):
    dm = _module(root)
    with caplog.at_level(logging.WARNING, logger="mtfcdd.data"):
        loader = dm.train_dataloader()
    assert "epoch_draws is unset" in caplog.text
    assert isinstance(loader.sampler, BalancedClassSampler) and loader.sampler.num_samples == len(dm.train_dataset)
    assert isinstance(loader, ResumableLoader) and isinstance(loader.dataset, SeededDraws)
    dm.epoch_draws = 37
    loader = dm.train_dataloader()
    assert len(loader.sampler) == 37 and len(loader) == 10
    assert loader.sampler.class_sizes == [n for n in dm.train_class_counts() if n]
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["label"].shape == (4, 8) and "mask" not in batch


def test_eval_loaders_are_sequential_with_masks(root):
    dm = _module(root, eval_batch_size=5)
    for loader, dataset in (
        (dm.val_dataloader(), dm.val_dataset),
        (dm.test_dataloader(), dm.test_dataset),
        (dm.predict_dataloader(), dm.test_dataset),
    ):
        assert isinstance(loader.sampler, EvaluationShardSampler) and loader.batch_size == 5
        paths = [p for batch in loader for p in batch["path"]]
        assert paths == [str(r.image) for r in dataset.records]
    batch = next(iter(dm.test_dataloader()))
    assert batch["mask"].shape == (5, 16, 16) and batch["mask"].dtype == torch.bool


def test_loader_options_follow_the_workers(root):
    dm = RealIADDataModule(root, alpha=0.2, num_workers=0, persistent_workers=True, pin_memory="auto")
    assert dm.persistent_workers is False and dm.prefetch_factor is None
    assert dm.pin_memory is torch.cuda.is_available()
    dm = RealIADDataModule(root, alpha=0.2, num_workers=2, prefetch_factor=3, pin_memory=False)
    assert dm.persistent_workers is True and dm.prefetch_factor == 3 and dm.pin_memory is False


def test_arguments_are_plain_hparams_that_a_checkpoint_loads(root, tmp_path):
    """Lightning writes ``dict(datamodule.hparams)`` into every checkpoint, which loads with weights_only=True:
    paths, OmegaConf containers, tuples and numpy scalars are stored as str, dict, list and int."""
    dm = SyntheticRealIADDataModule(
        synthetic=OmegaConf.create({"preset": "tiny", "seed": 0}),
        root=root,
        alpha=0.2,
        categories=("pcb",),
        augment=OmegaConf.create({"p": 0.3}),
        sampler_seed=np.int64(3),
        **FAST,
    )
    stored = dict(dm.hparams)
    assert stored["root"] == str(root) and stored["categories"] == ["pcb"] and stored["augment"] == {"p": 0.3}
    assert stored["synthetic"] == {"preset": "tiny", "seed": 0} and stored["defect_codes"] == list(DEFECT_CODES)
    assert type(stored["sampler_seed"]) is int and stored["batch_size"] == FAST["batch_size"]
    torch.save({"datamodule_hyper_parameters": stored}, tmp_path / "hparams.ckpt")
    assert torch.load(tmp_path / "hparams.ckpt", weights_only=True)["datamodule_hyper_parameters"] == stored


def test_loader_before_setup_is_a_clear_error(root):
    with pytest.raises(RuntimeError, match="call setup"):
        RealIADDataModule(root, alpha=0.2).train_dataloader()


def test_alpha_zero_and_single_mode(tmp_path):
    root = write_realiad(tmp_path, alpha=0.0, categories=("pcb",))
    dm = _module(root, alpha=0.0, mode="single")
    labels = torch.stack([dm.test_dataset[i]["label"] for i in range(len(dm.test_dataset))])
    assert labels.shape[1] == 1
    assert labels[:, 0].tolist() == [float(r.type_index >= 0) for r in dm.test_dataset.records]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.3}, r"alpha=0.3 is not valid"),
        ({"mode": "dual"}, r"mode='dual' is not valid; choose one of: multi, single"),
        ({"augment": {"rotation": 3}}, r"data.augment has unknown keys \['rotation'\]"),
        ({"val_fraction": 1.0}, r"data.val_fraction=1.0 .*\[0, 1\)"),
        ({"batch_size": 0}, r"data.batch_size=0"),
        ({"eval_batch_size": 2.5}, r"data.eval_batch_size=2.5"),
        ({"num_workers": -1}, r"data.num_workers=-1"),
        ({"pin_memory": "yes"}, r"data.pin_memory='yes'"),
        ({"test_max_images": 0}, r"data.test_max_images=0"),
        ({"image_size": -1}, r"data.image_size=-1"),
        ({"defect_codes": ["AK", "XX"]}, r"unknown: XX"),
    ],
)
def test_bad_arguments_fail_at_construction(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RealIADDataModule(tmp_path, **{"alpha": 0.2, **kwargs})


def test_summary_rows_without_categories():
    record = Record(image="a", mask=None, category="c", anomaly_class="OK", type_index=-1, sample="s", view="C1")
    defect = Record(image="b", mask="m", category="c", anomaly_class="ZW", type_index=1, sample="t", view="C1")
    rows = summary_rows({"test": [record, defect, defect]}, defect_codes=("QS", "ZW"))
    assert rows == [{"split": "test", "category": "all", "QS": 0, "ZW": 2, "OK": 1, "total": 3}]
    assert format_summary_table(rows).splitlines() == [
        "split  category  QS  ZW  OK  total",
        "-----  --------  --  --  --  -----",
        "test   all        0   2   1      3",
    ]


def test_balance_binary_draws_normal_and_defective_half_each_and_counts_two_classes(root):
    dm = _module(root, mode="single", balance="binary", val_fraction=0.0)
    expected = expected_counts("train")
    normal = expected["OK"]
    assert dm.train_class_counts() == [sum(expected.values()) - normal, normal]
    dm.epoch_draws = 4000
    sampler = dm.train_dataloader().sampler
    assert sampler.class_sizes == dm.train_class_counts()
    is_normal = [dm.train_dataset.records[i].type_index < 0 for i in sampler.global_sequence()]
    assert abs(sum(is_normal) / len(is_normal) - 0.5) < 0.03


def test_balance_auto_follows_the_mode_and_types_counts_nine_classes(root):
    from mtfcdd.sampling.balance import AUTO_BALANCE

    assert _module(root, mode="multi").balance == "types"
    assert _module(root, mode="single").balance == AUTO_BALANCE["single"]
    assert len(_module(root, mode="single", balance="types").train_class_counts()) == 9
    with pytest.raises(ConfigError, match="data.balance='typed'.*types, binary"):
        RealIADDataModule(root, alpha=0.2, balance="typed")


@pytest.mark.parametrize("balance", ["types", "binary"])
def test_balanced_epoch_follows_the_sampled_classes(root, balance):
    import math
    import types

    from mtfcdd.sampling.coupon import expected_draws
    from mtfcdd.sampling.epoch_callback import BalancedEpochLength

    dm = _module(root, mode="single", balance=balance)
    BalancedEpochLength().setup(types.SimpleNamespace(datamodule=dm, loggers=[]), None, "fit")
    counts = [n for n in dm.train_class_counts() if n]
    assert len(counts) == (2 if balance == "binary" else len(_classes(dm.train_dataset.records)))
    assert dm.epoch_draws == math.ceil(expected_draws(counts).mean)
