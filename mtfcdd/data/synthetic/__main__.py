"""``python -m mtfcdd.data.synthetic --out DIR [--preset tiny|demo] [--layout L] ...``: write a synthetic set.

``--layout flat|nested`` (default flat) writes the Real-IAD layout with its 8 types and split JSONs (flat or nested
JSON folders); ``--layout types|mvtec`` writes per-type or MVTec AD folders for ``data=folder``, one view per sample,
with types of their own (``--types N|NAME ...``, default all 8) and ``--defects-per-type`` images of each. Example:
``--out DIR --preset tiny --layout mvtec --types 3`` (crack, dent, rust). The package describes the trees.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from mtfcdd.core.errors import UserError, exit_on_user_error
from mtfcdd.data.realiad import FUIAD_ALPHAS, json_folder_name
from mtfcdd.data.synthetic.build import build_synthetic, ensure_synthetic, read_marker
from mtfcdd.data.synthetic.config import PRESETS
from mtfcdd.data.synthetic.folders import FOLDER_LAYOUTS, FOLDER_TYPES
from mtfcdd.data.synthetic.layout import LAYOUTS
from mtfcdd.data.synthetic.styles import CATEGORY_STYLES


def _count_or_names(option: str, values: Sequence[str], choices: Sequence[str]) -> tuple[str, ...]:
    """``values`` of ``option`` (comma- or space-separated): one count N (the first N ``choices``) or names."""
    names = [name for value in values for name in value.split(",") if name]
    if len(names) == 1 and names[0].isdigit():
        count = int(names[0])
        if not 1 <= count <= len(choices):
            raise UserError(f"{option} {count}: expected a count in [1, {len(choices)}] or names")
        return tuple(choices)[:count]
    return tuple(names)


def _print_realiad(totals: dict[str, int]) -> None:
    """The image counts of every fuiad split."""
    for alpha in FUIAD_ALPHAS:
        folder = json_folder_name("fuiad", alpha)
        print(
            f"  {folder}: train {totals[folder + '/train']} ({totals[folder + '/train_from_ng']} from NG), "
            f"test {totals[folder + '/test']} ({totals[folder + '/test_anomalous']} anomalous)"
        )


def main(argv: Sequence[str] | None = None) -> None:
    """Write (or reuse, without ``--force``) a synthetic set and print its image counts per split."""
    parser = argparse.ArgumentParser(
        prog="python -m mtfcdd.data.synthetic",
        description="Write a synthetic data set: in the exact Real-IAD layout (images, masks, split JSONs), or as "
        "per-type or MVTec AD folders with types of their own (for data=folder).",
        # a literal: the data layer does not import mtfcdd.run.help's page table
        epilog="Read: docs/realiad-format.md (the Real-IAD layout and this generator), docs/own-images.md "
        "(the folder layouts, data=folder).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (the data set root)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="sizes to start from (default demo)")
    parser.add_argument(
        "--categories",
        nargs="+",
        metavar="N|NAME",
        help=f"a count (the first N) or names out of: {', '.join(CATEGORY_STYLES)}",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same images")
    parser.add_argument(
        "--layout",
        choices=LAYOUTS + FOLDER_LAYOUTS,
        default="flat",
        help="Real-IAD with flat: DIR/realiad_jsons_fuiad_0.1/ or nested: DIR/realiad_jsons/realiad_jsons_fuiad_0.1/; "
        "folders with types: DIR/<category>/{good,<type>,masks/<type>}/ or mvtec: DIR/<category>/{train/good, "
        "test/good, test/<type>, ground_truth/<type>}/ (default flat)",
    )
    parser.add_argument(
        "--types",
        nargs="+",
        metavar="N|NAME",
        help=f"types and mvtec layouts: a count (the first N) or names out of: {', '.join(FOLDER_TYPES)} (default all)",
    )
    parser.add_argument(
        "--defects-per-type",
        type=int,
        help="types and mvtec layouts: defective images per type and category (default: the Real-IAD set's defective "
        "samples per type, at least 6)",
    )
    parser.add_argument("--size", type=int, help="image side in px")
    parser.add_argument("--train-samples", type=int, help="train samples per category (x5 views), every alpha")
    parser.add_argument("--test-ok-samples", type=int, help="OK test samples per category")
    parser.add_argument("--test-ng-samples", type=int, help="NG test samples per category and defect type")
    parser.add_argument("--workers", type=int, help="rendering processes (default: 1 for small sets, else the cores)")
    parser.add_argument("--force", action="store_true", help="rebuild even when an identical build is there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with exit_on_user_error():
        overrides = {
            key: getattr(args, key)
            for key in ("size", "train_samples", "test_ok_samples", "test_ng_samples")
            if getattr(args, key) is not None
        }
        if args.categories:
            overrides["categories"] = _count_or_names("--categories", args.categories, tuple(CATEGORY_STYLES))
        config = replace(PRESETS[args.preset], **overrides)
        types = _count_or_names("--types", args.types, tuple(FOLDER_TYPES)) if args.types else None
        build = build_synthetic if args.force else ensure_synthetic
        build(
            args.out,
            config,
            seed=args.seed,
            layout=args.layout,
            workers=args.workers,
            types=types,
            defects_per_type=args.defects_per_type,
        )
        marker = read_marker(args.out)
        totals = marker["totals"]
        print(
            f"{args.out}: {totals['images']} images, {totals['masks']} masks, "
            f"{len(config.categories)} categories ({', '.join(config.categories)}), {config.size} px"
        )
        if args.layout in LAYOUTS:
            _print_realiad(totals)
        else:
            first = marker["per_category"][config.categories[0]]
            counts = ", ".join(f"{key}/ {value}" for key, value in first.items() if key not in ("images", "masks"))
            print(f"  images per category: {counts}")


if __name__ == "__main__":
    main(sys.argv[1:])
