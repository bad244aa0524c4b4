"""Balanced class sampler: uniform classes, per-class cycles, reproducibility, DDP shares, speed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader, TensorDataset

from mtfcdd.sampling import sampler as sampler_module
from mtfcdd.sampling.sampler import BalancedClassSampler


def imbalanced_classes(sizes: dict[int, int], seed: int = 0) -> np.ndarray:
    """class_of for a dataset with ``sizes[c]`` items of class c, in shuffled dataset order."""
    labels = np.concatenate([np.full(size, label) for label, size in sizes.items()])
    return np.random.default_rng(seed).permutation(labels)


SIZES = {8: 400, 0: 30, 1: 7, 2: 1, 3: 55, 4: 12, 5: 3, 6: 19, 7: 90}  # 8 defect types + normal (class 8)


def test_every_class_is_drawn_equally_often():
    class_of = imbalanced_classes(SIZES)
    sampler = BalancedClassSampler(class_of, num_samples=45_000, seed=1, num_replicas=1, rank=0)
    drawn = np.bincount(class_of[list(sampler)], minlength=9)
    assert drawn.sum() == 45_000 and (drawn > 0).all()
    assert stats.chisquare(drawn).pvalue > 1e-4  # uniform over the 9 classes, despite sizes from 1 to 400
    # the same counts would be wildly non-uniform under plain shuffling
    assert stats.chisquare(np.bincount(class_of, minlength=9)).pvalue < 1e-10


def test_each_class_cycles_through_all_its_images_before_repeating():
    class_of = imbalanced_classes(SIZES)
    sequence = BalancedClassSampler(class_of, num_samples=20_000, seed=2, num_replicas=1, rank=0).global_sequence()
    for label, size in SIZES.items():
        drawn = sequence[class_of[sequence] == label]
        members = np.flatnonzero(class_of == label)
        full = len(drawn) // size
        assert full >= 2 or label == 8
        cycles = drawn[: full * size].reshape(full, size)
        assert (np.sort(cycles, axis=1) == members).all()  # every full cycle is a permutation of the class
        assert len(np.unique(drawn[full * size :])) == len(drawn) - full * size  # no repeat in the partial cycle
        if size >= 12:  # 12! orders: repeats would mean no reshuffle
            assert len({tuple(cycle) for cycle in cycles}) == full  # reshuffled: cycles differ


def test_sequence_depends_only_on_seed_and_epoch():
    class_of = imbalanced_classes(SIZES)
    first = BalancedClassSampler(class_of, 3000, seed=7, num_replicas=1, rank=0)
    second = BalancedClassSampler(class_of, 3000, seed=7, num_replicas=1, rank=0)
    assert list(first) == list(second)
    epoch0 = list(first)
    first.set_epoch(1)
    second.set_epoch(1)
    assert list(first) == list(second) != epoch0
    first.set_epoch(0)
    assert list(first) == epoch0
    assert list(BalancedClassSampler(class_of, 3000, seed=8, num_replicas=1, rank=0)) != epoch0


def test_shorter_epochs_are_prefixes_of_longer_ones():
    class_of = imbalanced_classes(SIZES)
    sampler = BalancedClassSampler(class_of, 5000, seed=3, num_replicas=1, rank=0)
    longer = sampler.global_sequence(7000)
    assert (sampler.global_sequence() == longer[:5000]).all()


@pytest.mark.parametrize("num_replicas", [2, 3])
@pytest.mark.parametrize("num_samples", [3001, 3000, 5])
def test_ranks_take_equal_disjoint_shares_of_one_sequence(num_replicas, num_samples):
    class_of = imbalanced_classes(SIZES)
    single = list(BalancedClassSampler(class_of, num_samples, seed=4, num_replicas=1, rank=0))
    shares = []
    for rank in range(num_replicas):
        sampler = BalancedClassSampler(class_of, num_samples, seed=4, num_replicas=num_replicas, rank=rank)
        sampler.set_epoch(0)
        shares.append(list(sampler))
        assert len(shares[-1]) == len(sampler) == -(-num_samples // num_replicas)
    # interleaving the shares position by position rebuilds one sequence: shares are disjoint positions of it
    interleaved = [share[step] for step in range(len(shares[0])) for share in shares]
    assert interleaved[:num_samples] == single
    assert len(interleaved) - num_samples < num_replicas
    reference = BalancedClassSampler(class_of, num_samples, seed=4, num_replicas=1, rank=0)
    # the padding continues the same draw process
    assert interleaved == reference.global_sequence(len(interleaved)).tolist()


def test_replicas_default_to_torch_distributed(monkeypatch):
    class_of = imbalanced_classes(SIZES)
    monkeypatch.setattr(sampler_module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(sampler_module.dist, "get_world_size", lambda: 3)
    monkeypatch.setattr(sampler_module.dist, "get_rank", lambda: 2)
    sampler = BalancedClassSampler(class_of, 100, seed=5)
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (3, 2, 34)
    explicit = BalancedClassSampler(class_of, 100, seed=5, num_replicas=3, rank=2)
    assert list(sampler) == list(explicit)


def test_replicas_default_to_a_single_process():
    sampler = BalancedClassSampler([0, 1, 1], 10)
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (1, 0, 10)


def test_arbitrary_class_ids_and_sizes():
    class_of = [-1, 8, 8, -1, 3, -1]
    sampler = BalancedClassSampler(class_of, 600, seed=0, num_replicas=1, rank=0)
    assert sampler.classes.tolist() == [-1, 3, 8] and sampler.class_sizes == [3, 1, 2]
    drawn = list(sampler)
    assert sorted(set(drawn)) == list(range(6))
    assert np.bincount(np.array(class_of)[drawn] + 1).max() < 260  # about 200 per class


def test_data_loader_yields_len_batches():
    class_of = imbalanced_classes(SIZES)
    dataset = TensorDataset(torch.arange(len(class_of)))
    sampler = BalancedClassSampler(class_of, 1001, seed=0, num_replicas=2, rank=1)
    batches = list(DataLoader(dataset, batch_size=32, sampler=sampler))
    assert len(batches) == -(-len(sampler) // 32) == 16
    assert torch.cat([batch[0] for batch in batches]).tolist() == list(sampler)


def test_real_size_epoch_is_balanced_and_split_between_ranks():
    """Real-IAD scale: 57,840 images in 9 classes, ~487k draws per epoch, rank 0 of 2 (speed:
    experiments/bench_index_and_sampling.py)."""
    sizes = {8: 54_066, 0: 500, 1: 400, 2: 600, 3: 300, 4: 900, 5: 474, 6: 300, 7: 300}
    class_of = imbalanced_classes(sizes)
    sampler = BalancedClassSampler(class_of, 486_594, seed=0, num_replicas=2, rank=0)
    indices = list(sampler)
    assert len(indices) == 243_297
    counts = np.bincount(class_of[indices], minlength=9)
    assert abs(counts / len(indices) - 1 / 9).max() < 0.01  # each class ~1/9 of the draws (std ~0.0006)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_of": [], "num_samples": 5}, "non-empty"),
        ({"class_of": [[0, 1]], "num_samples": 5}, "1-D"),
        ({"class_of": [0.5, 1.0], "num_samples": 5}, "integer class ids"),
        ({"class_of": [0, 1], "num_samples": 0}, "num_samples"),
        ({"class_of": [0, 1], "num_samples": 5, "seed": -1}, "seed"),
        ({"class_of": [0, 1], "num_samples": 5, "num_replicas": 0}, "num_replicas"),
        ({"class_of": [0, 1], "num_samples": 5, "num_replicas": 2, "rank": 2}, r"rank must be an integer in \[0, 2\)"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BalancedClassSampler(**kwargs)


def test_bad_epoch_is_rejected():
    with pytest.raises(ValueError, match="epoch"):
        BalancedClassSampler([0, 1], 5).set_epoch(-1)


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        sampler = BalancedClassSampler(imbalanced_classes(SIZES), 1001, seed=6)
        sampler.set_epoch(2)
        np.save(f"{out_dir}/rank{rank}.npy", np.array([sampler.num_replicas, sampler.rank, *sampler]))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_shares_under_a_real_process_group(tmp_path):
    """Two gloo processes: defaults come from torch.distributed, and the shares rebuild the global sequence."""
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    results = [np.load(tmp_path / f"rank{rank}.npy") for rank in range(2)]
    assert [result[:2].tolist() for result in results] == [[2, 0], [2, 1]]
    shares = [result[2:] for result in results]
    assert len(shares[0]) == len(shares[1]) == 501
    reference = BalancedClassSampler(imbalanced_classes(SIZES), 1001, seed=6, num_replicas=1, rank=0)
    reference.set_epoch(2)
    assert (np.stack(shares, axis=1).reshape(-1) == reference.global_sequence(1002)).all()


@pytest.mark.parametrize("size, replicas", [(10, 1), (10, 3), (2, 4), (0, 2)])
def test_evaluation_shards_cover_every_image_exactly_once(size, replicas):
    from mtfcdd.sampling.sampler import EvaluationShardSampler

    shards = [list(EvaluationShardSampler(size, num_replicas=replicas, rank=r)) for r in range(replicas)]
    assert sorted(i for shard in shards for i in shard) == list(range(size))
    assert [len(EvaluationShardSampler(size, replicas, r)) for r in range(replicas)] == [len(s) for s in shards]


def test_a_resumed_epoch_yields_the_rest_of_the_share_with_its_draw_positions():
    classes = [0] * 6 + [1] * 2 + [2] * 9
    full = BalancedClassSampler(classes, num_samples=21, seed=5, num_replicas=2, rank=1, draw_keys=True)
    full.set_epoch(3)
    draws = list(full)
    assert [position for _, _, position in draws] == list(range(1, 22, 2))  # rank 1: odd places of the sequence
    assert [index for index, _, _ in draws] == full.global_sequence()[1::2].tolist()
    resumed = BalancedClassSampler(classes, num_samples=21, seed=5, num_replicas=2, rank=1, draw_keys=True)
    resumed.resume(3, 4)
    assert list(resumed) == draws[4:] and resumed.started == (3, 4)
    resumed.set_epoch(3)  # Lightning sets the same epoch again: still resumed
    assert list(resumed) == draws[4:]
    resumed.set_epoch(4)  # the next epoch starts at its beginning
    assert len(list(resumed)) == len(resumed) == 11
    with pytest.raises(ValueError, match="position=12 is past the end of an epoch of 11 draws"):
        resumed.resume(4, 12)
