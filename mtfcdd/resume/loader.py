"""A training loader that resumes mid-epoch exactly: sampler position in checkpoints, augmentation seeded per draw.

Lightning (2.3 and later) saves ``state_dict()`` of every training loader that has one in the checkpoint's loop
state and hands it back to ``load_state_dict()`` before it iterates again after a restart; it fetches batches of a
loader with a known length without looking ahead, so the batches handed out so far are exactly the batches trained
on. Random augmentation is a function of (seed, epoch, position in the epoch's sequence) only, so a resumed epoch
draws the same augmented images as an uninterrupted one whatever the number of loader workers, and the workers
carry no random state worth saving.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader, Dataset

from mtfcdd.sampling.sampler import BalancedClassSampler


class SeededDraws(Dataset):
    """``dataset`` read with ``(index, epoch, position)`` keys: each draw reseeds the dataset's augmentation from
    ``(seed, epoch, position)`` before reading item ``index`` (``dataset`` needs ``reseed(entropy)``)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        index, epoch, position = key
        self.dataset.reseed([self.seed, epoch, position])
        return self.dataset[index]


class ResumableLoader(DataLoader):
    """A DataLoader over a ``BalancedClassSampler`` whose state is (epoch, position): this rank's draws of
    the epoch handed out so far. ``load_state_dict`` makes the next iteration continue from there."""

    sampler: BalancedClassSampler

    def __iter__(self):
        if not isinstance(self.sampler, BalancedClassSampler):
            raise TypeError(f"ResumableLoader needs a BalancedClassSampler, got {type(self.sampler).__name__}")
        self._current = super().__iter__()
        return self._current

    def state_dict(self) -> dict[str, int]:
        epoch, start = self.sampler.started
        iterator = getattr(self, "_current", None)
        # batches the iterator returned so far (torch's own count, which its length check uses too)
        handed_out = 0 if iterator is None else iterator._num_yielded * self.batch_size
        return {"epoch": epoch, "position": min(start + handed_out, len(self.sampler))}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.resume(state["epoch"], state["position"])
