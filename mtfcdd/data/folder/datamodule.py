"""``data=folder``: a folder of one's own images as train / validation / test loaders.

``FolderDataModule.setup`` reads and checks the folder (``read_folder``), splits it
(``split_folder``) and writes the split into ``split_dir`` in Real-IAD's JSON format,
with the files it skipped (``skipped_files.csv``); when ``split_dir`` already holds a split (``evaluate`` and
``resume=true`` find the trained run's), that split is reused once its files show it was made from this folder with
these options. Everything after that is ``RealIADDataModule``'s: the Real-IAD loader
reads the split (with its ``validation`` list as the validation set), then the same datasets, checks, balanced
sampler and balanced epoch serve it. Every problem of the folder or the options raises a
``UserError`` before anything is written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mtfcdd.core.config import ConfigError
from mtfcdd.core.defect_types import Vocabulary
from mtfcdd.data.datamodule import RealIADDataModule
from mtfcdd.data.folder.checks import write_skipped
from mtfcdd.data.folder.index import read_folder
from mtfcdd.data.folder.realiad_json import JSON_SET, split_differences, split_metas, stored_metas, write_split
from mtfcdd.data.folder.records import SHOW, FolderIndex
from mtfcdd.data.folder.split import DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION, split_folder, split_options
from mtfcdd.data.realiad import VAL_SPLIT, Record, load_splits

log = logging.getLogger("mtfcdd.data")

SKIPPED_FILE = "skipped_files.csv"
"""The list of files left out (``path``, ``reason``), in ``split_dir`` beside the split they were left out of."""


class FolderDataModule(RealIADDataModule):
    """A folder of images (per-type folders or MVTec AD) through ``RealIADDataModule``.

    Args (the config's ``data.*`` keys, all kept in ``hparams``):
        root: the folder of images; layout, type_map, types, on_unreadable: how it is read, see
            ``read_folder``.
        split_dir: where the split is written, or read when it already holds one (checked against the options).
        type_names, type_colours: type -> display name / ``[r, g, b]`` overrides of the vocabulary, see
            ``from_codes``.
        test_fraction, val_fraction, train_defect_fraction, train_defects_per_type, split_seed: the split, see
            ``split_folder`` (``val_fraction`` 0: no validation set).
        categories: the categories to load (None: all); the split covers every category of the folder.
        loader: every other argument of ``RealIADDataModule`` (mode, balance, image size, augmentation,
            batches, workers, subsets, sampler seed, ...). Real-IAD's ``alpha``, ``json_set``, ``resolution`` and
            ``defect_codes`` do not apply: the split's ``train_defect_fraction`` plays alpha's role and the
            folder brings its types.

    ``vocabulary`` and ``defect_codes`` (the folder's types) are set by ``setup``; None and () before.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split_dir: str | os.PathLike,
        layout: str = "auto",
        type_map: Mapping[str, str] | None = None,
        types: Sequence[str] | None = None,
        type_names: Mapping[str, str] | None = None,
        type_colours: Mapping[str, Sequence[int]] | None = None,
        test_fraction: float = DEFAULT_TEST_FRACTION,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        train_defect_fraction: float | None = None,
        train_defects_per_type: int | None = None,
        split_seed: int = 0,
        on_unreadable: str = "skip",
        categories: Sequence[str] | None = None,
        **loader: Any,
    ) -> None:
        # the folder's own options are checked in setup (a UserError there ends the command with one line; raised
        # here, Hydra's instantiate would wrap it in a traceback)
        super().__init__(
            root=root, alpha=0.0, json_set=JSON_SET, categories=categories, val_fraction=val_fraction, **loader
        )
        self.vocabulary: Vocabulary | None = None
        self.defect_codes: tuple[str, ...] = ()

    def split_records(self) -> tuple[list[Record], list[Record], list[Record]]:
        """(train, validation, test) records of the folder's split: read and check the folder, write the split
        (or check the one in ``split_dir``), load it; sets ``vocabulary`` and ``defect_codes``."""
        hp = self.hparams
        index = read_folder(
            hp.root, layout=hp.layout, type_map=hp.type_map, types=hp.types, on_unreadable=hp.on_unreadable
        )
        arguments = {
            "seed": hp.split_seed,
            "test_fraction": hp.test_fraction,
            "val_fraction": hp.val_fraction,
            "train_defect_fraction": hp.train_defect_fraction,
            "train_defects_per_type": hp.train_defects_per_type,
        }
        options = split_options(index, **arguments)
        vocabulary = Vocabulary.from_codes(index.types, names=hp.type_names, colours=hp.type_colours)
        self._write_or_check_split(index, options, arguments)
        splits = load_splits(
            hp.split_dir,
            json_set=JSON_SET,
            image_root=hp.root,
            splits=("train", VAL_SPLIT, "test"),
            categories=hp.categories,
            defect_codes=vocabulary.codes,
            code_choices=None,
        )
        self.vocabulary, self.defect_codes = vocabulary, vocabulary.codes
        self.hparams["defect_codes"] = list(vocabulary.codes)  # what the checkpoint's data module hparams record
        return splits["train"], splits[VAL_SPLIT], splits["test"]

    def _write_or_check_split(
        self, index: FolderIndex, options: Mapping[str, object], arguments: Mapping[str, Any]
    ) -> None:
        """Write the split of ``index`` into ``split_dir`` (with the skipped files), or check the one there."""
        split_dir = Path(self.hparams.split_dir)
        stored = stored_metas(split_dir)
        if stored is None:
            split = split_folder(index, **arguments)
            folder = write_split(index, split, split_dir)
            log.info(
                "folder split (train %d, validation %d, test %d images) written to %s",
                len(split.train),
                len(split.val),
                len(split.test),
                folder,
            )
            if split.test:
                log.info(
                    "%d of the %d labelled images (%.0f %%) are kept back for the test stage and not trained on; to "
                    "train the final model on all of them, repeat the command with data.test_fraction=0 test=false",
                    len(split.test),
                    len(index.images),
                    100.0 * len(split.test) / len(index.images),
                )
            if index.skipped:
                path = write_skipped(split_dir / SKIPPED_FILE, index.skipped)
                log.warning(
                    "%d files under %s are not readable images and were left out; listed in %s",
                    len(index.skipped),
                    index.root,
                    path,
                )
            return
        differences = split_differences(stored, split_metas(index, options))
        if differences:
            shown = "; ".join(differences[:SHOW]) + (
                f"; ... ({len(differences) - SHOW} more)" if len(differences) > SHOW else ""
            )
            raise ConfigError(
                f"data.split_dir={str(split_dir)!r} holds a split made from another folder or with other options "
                f"({shown}); repeat the options it was made with, or point data.split_dir at a new folder (by "
                "default it is in the run directory)"
            )
        log.info("reusing the folder split in %s", split_dir)
