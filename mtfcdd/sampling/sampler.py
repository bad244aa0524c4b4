"""Class-balanced sampling (Section 4.2), distributed-aware.

Each draw picks a class uniformly among the classes present, then the next image of that class from a per-class
shuffled order that is reshuffled when exhausted. One balanced epoch is ``num_samples`` draws (the coupon-collector
length of ``mtfcdd.sampling.coupon``, set by ``mtfcdd.sampling.epoch_callback.BalancedEpochLength``).

Under DDP every rank generates the same global sequence from (seed, epoch) and takes the share
``sequence[rank::num_replicas]``; the global sequence is padded up to a multiple of ``num_replicas`` by continuing
the same draw process, so every rank yields the same number of indices and the shares are disjoint positions of
one sequence. Lightning must not wrap this sampler in a DistributedSampler (``use_distributed_sampler=False``).

Resuming mid-epoch: ``BalancedClassSampler.resume`` makes the iterations of an epoch start at a given position
of this rank's share (``mtfcdd.resume.loader.ResumableLoader`` saves and restores that position in
checkpoints). With ``draw_keys`` the sampler yields ``(index, epoch, position)`` triples, position being the draw's
place in the global sequence, so that a dataset can seed each draw's augmentation from where it stands in the
sequence (``mtfcdd.resume.loader.SeededDraws``) instead of from a worker's running random state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from numbers import Integral

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


def _non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _distributed_default(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """(num_replicas, rank): the given values, else torch.distributed's when initialised, else (1, 0)."""
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, Integral) or num_replicas < 1:
        raise ValueError(f"num_replicas must be a positive integer, got {num_replicas!r}")
    if isinstance(rank, bool) or not isinstance(rank, Integral) or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be an integer in [0, {num_replicas}), got {rank!r}")
    return int(num_replicas), int(rank)


class BalancedClassSampler(Sampler[int]):
    """Indices into a dataset whose item ``j`` belongs to class ``class_of[j]``, drawn class-balanced.

    Args:
        class_of: class id of every dataset item (length N, integers; the classes are the distinct values).
        num_samples: draws of one balanced epoch over all ranks together.
        seed: base seed; the sequence of an epoch depends only on (seed, epoch).
        num_replicas, rank: the distributed share; default to torch.distributed when initialised, else 1 and 0.
        draw_keys: yield ``(index, epoch, position)`` triples instead of dataset indices (module docstring).

    ``len(sampler)`` is ceil(num_samples / num_replicas), the indices this rank yields per full epoch (a resumed
    epoch yields the ones after its start position).
    """

    def __init__(
        self,
        class_of: Sequence[int],
        num_samples: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        draw_keys: bool = False,
    ) -> None:
        labels = np.asarray(class_of)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"class_of must be a non-empty 1-D sequence of class ids, got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"class_of must hold integer class ids, got dtype {labels.dtype}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, Integral) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        self.seed = _non_negative_int("seed", seed)
        self.num_replicas, self.rank = _distributed_default(num_replicas, rank)
        self.num_samples = int(num_samples)
        self.draw_keys = bool(draw_keys)
        self.epoch = 0
        self.start = 0
        """Position in this rank's share where iterations of ``epoch`` start (0 unless resumed)."""
        self.started: tuple[int, int] = (0, 0)
        """(epoch, start) of the latest iteration begun."""
        self.classes, inverse = np.unique(labels, return_inverse=True)
        # members[c]: dataset indices of class self.classes[c], in dataset order
        order = np.argsort(inverse, kind="stable")
        self.members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])

    @property
    def class_sizes(self) -> list[int]:
        """Images per class, in the order of ``self.classes`` (the coupon-collector quotas)."""
        return [len(members) for members in self.members]

    @property
    def total_draws(self) -> int:
        """Length of the global sequence: num_samples padded up to a multiple of num_replicas."""
        return math.ceil(self.num_samples / self.num_replicas) * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose sequence the next iteration yields (Lightning calls this every epoch); a new epoch
        starts at position 0."""
        epoch = _non_negative_int("epoch", epoch)
        if epoch != self.epoch:
            self.start = 0
        self.epoch = epoch

    def resume(self, epoch: int, position: int) -> None:
        """Make iterations of ``epoch`` start after the first ``position`` draws of this rank's share."""
        position = _non_negative_int("position", position)
        if position > len(self):
            raise ValueError(f"position={position} is past the end of an epoch of {len(self)} draws on this rank")
        self.epoch = _non_negative_int("epoch", epoch)
        self.start = position

    def global_sequence(self, draws: int | None = None) -> np.ndarray:
        """The first ``draws`` (default ``total_draws``) indices of this epoch's sequence, identical on all ranks.

        Prefixes agree: the sequence of k draws is the first k of any longer one, because each random stream
        (class picks; each class's shuffled orders) is consumed in order.
        """
        draws = self.total_draws if draws is None else _non_negative_int("draws", draws)
        # independent streams under (seed, epoch): the class picks, and each class's shuffled orders
        pick_stream, *class_streams = np.random.SeedSequence([self.seed, self.epoch]).spawn(1 + len(self.members))
        picks = np.random.default_rng(pick_stream).integers(0, len(self.members), size=draws)
        sequence = np.empty(draws, dtype=np.int64)
        # positions of each class's picks, in draw order
        per_class = np.bincount(picks, minlength=len(self.members))
        positions = np.split(np.argsort(picks, kind="stable"), np.cumsum(per_class)[:-1])
        for members, stream, where in zip(self.members, class_streams, positions):
            cycles = -(-len(where) // len(members))
            orders = np.random.default_rng(stream).permuted(np.broadcast_to(members, (cycles, len(members))), axis=1)
            sequence[where] = orders.reshape(-1)[: len(where)]
        return sequence

    def __iter__(self) -> Iterator[int] | Iterator[tuple[int, int, int]]:
        self.started = (self.epoch, self.start)
        positions = np.arange(self.rank, self.total_draws, self.num_replicas)[self.start :]
        indices = self.global_sequence()[positions].tolist()
        if not self.draw_keys:
            return iter(indices)
        return iter([(index, self.epoch, position) for index, position in zip(indices, positions.tolist())])

    def __len__(self) -> int:
        return self.total_draws // self.num_replicas


class EvaluationShardSampler(Sampler[int]):
    """Sequential indices ``rank, rank + R, ...`` of a dataset of ``size`` items: under DDP every image is evaluated
    exactly once over all ranks (no padding duplicates, which would bias AUROC and AUPRO); one process sees all."""

    def __init__(self, size: int, num_replicas: int | None = None, rank: int | None = None) -> None:
        self.size = _non_negative_int("size", size)
        self.num_replicas, self.rank = _distributed_default(num_replicas, rank)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.num_replicas))
