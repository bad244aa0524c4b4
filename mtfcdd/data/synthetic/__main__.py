"""``python -m mtfcdd.data.synthetic --out DIR [--preset tiny|demo] ...``: write a synthetic set (see the package)."""

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
from mtfcdd.data.synthetic.layout import LAYOUTS
from mtfcdd.data.synthetic.styles import CATEGORY_STYLES


def _parse_categories(values: Sequence[str]) -> tuple[str, ...]:
    names = [name for value in values for name in value.split(",") if name]
    if len(names) == 1 and names[0].isdigit():
        count = int(names[0])
        if not 1 <= count <= len(CATEGORY_STYLES):
            raise UserError(f"--categories {count}: expected a count in [1, {len(CATEGORY_STYLES)}] or names")
        return tuple(CATEGORY_STYLES)[:count]
    return tuple(names)


def main(argv: Sequence[str] | None = None) -> None:
    """Write (or reuse, without ``--force``) a synthetic set and print its image counts per split."""
    parser = argparse.ArgumentParser(
        prog="python -m mtfcdd.data.synthetic",
        description="Write a synthetic data set in the exact Real-IAD layout (images, masks, split JSONs).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (the data set root)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="sizes to start from (default demo)")
    parser.add_argument(
        "--categories",
        nargs="+",
        metavar="N|NAME",
        help=f"a count (the first N) or names out of: {', '.join(CATEGORY_STYLES)}",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="flat",
        help="flat: DIR/realiad_jsons_fuiad_0.1/; nested: DIR/realiad_jsons/realiad_jsons_fuiad_0.1/",
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
            overrides["categories"] = _parse_categories(args.categories)
        config = replace(PRESETS[args.preset], **overrides)
        if args.force:
            build_synthetic(args.out, config, seed=args.seed, layout=args.layout, workers=args.workers)
        else:
            ensure_synthetic(args.out, config, seed=args.seed, layout=args.layout, workers=args.workers)
        marker = read_marker(args.out)
        totals = marker["totals"]
        print(
            f"{args.out}: {totals['images']} images, {totals['masks']} masks, "
            f"{len(config.categories)} categories ({', '.join(config.categories)}), {config.size} px"
        )
        for alpha in FUIAD_ALPHAS:
            folder = json_folder_name("fuiad", alpha)
            print(
                f"  {folder}: train {totals[folder + '/train']} ({totals[folder + '/train_from_ng']} from NG), "
                f"test {totals[folder + '/test']} ({totals[folder + '/test_anomalous']} anomalous)"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
