"""The Real-IAD data module over a generated set: builds it once (cached under ``data.root``), then reads it with
the real loading code."""

from __future__ import annotations

from typing import Any

from mtfcdd.core.config import check_choice
from mtfcdd.data.datamodule import RealIADDataModule
from mtfcdd.data.synthetic.build import ensure_synthetic
from mtfcdd.data.synthetic.layout import LAYOUTS


class SyntheticRealIADDataModule(RealIADDataModule):
    """``synthetic``: generator options (``preset``, ``seed``, ``layout``); every other argument as
    ``RealIADDataModule``. All of them are kept in ``hparams`` (the parent's ``save_hyperparameters``)."""

    def __init__(self, synthetic: dict[str, Any], **kwargs: Any) -> None:
        check_choice(
            "data.synthetic.layout",
            synthetic.get("layout", "flat"),
            LAYOUTS,
            " for data=synthetic (the types and mvtec folders are read by data=folder)",
        )
        super().__init__(**kwargs)  # its save_hyperparameters() reads ``synthetic`` from this frame

    def prepare_data(self) -> None:
        """Build the set at ``root`` unless a build with the same options is already there (rank 0 only)."""
        ensure_synthetic(self.hparams.root, **self.hparams.synthetic)
