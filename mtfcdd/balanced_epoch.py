"""A row of the paper's Table 2 (balanced-epoch length) for any class sizes.

    python -m mtfcdd.balanced_epoch --counts 54066,500,400,600,300,900,474,300,300 --batch-size 32
    python -m mtfcdd.balanced_epoch --alpha 0.2 --data-root data/Real-IAD [--categories audiojack,pcb] --method both

Counts are images per sampler class (8 defect types + normal); with ``--alpha`` they are read from the training
index (``mtfcdd.data.realiad.load_split``), counting records per sampler class
(``mtfcdd.sampling.balance.sampler_classes``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from mtfcdd.core.errors import UserError
from mtfcdd.run.help import argparse_epilog
from mtfcdd.sampling.balance import sampler_classes
from mtfcdd.sampling.coupon import METHODS, BalancedEpoch, balanced_epoch


def _counts(text: str) -> list[int]:
    """``--counts``: comma-separated positive integers."""
    try:
        counts = [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 900,52120, got {text!r}"
        ) from None
    if any(count <= 0 for count in counts):
        raise argparse.ArgumentTypeError(f"every class count must be positive (leave empty classes out), got {text!r}")
    return counts


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _categories(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated category names such as audiojack,pcb, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m mtfcdd.balanced_epoch``."""
    parser = argparse.ArgumentParser(
        prog="python -m mtfcdd.balanced_epoch",
        description="Expected length of a balanced epoch (coupon-collector time, paper Eq. 4/5 and Table 2).",
        epilog=argparse_epilog("balanced_epoch"),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--counts", type=_counts, help="images per class, comma-separated (e.g. 52120,900,...)")
    source.add_argument("--alpha", type=float, help="read the class counts of the training split at this alpha")
    parser.add_argument("--data-root", type=Path, help="Real-IAD root (with --alpha)")
    parser.add_argument("--categories", type=_categories, help="categories a,b (with --alpha; default: all)")
    parser.add_argument("--json-set", default="fuiad", choices=("fuiad", "standard", "sv"), help="(with --alpha)")
    parser.add_argument("--resolution", default="realiad_256", help="resolution folder (with --alpha)")
    parser.add_argument(
        "--balance",
        choices=("types", "binary"),
        default="types",
        help="sampled classes (with --alpha): types (9, the paper's) or binary (normal vs any defect)",
    )
    parser.add_argument("--batch-size", type=_positive_int, default=32, help="images per batch (default 32)")
    parser.add_argument("--method", choices=(*METHODS, "both"), default="exact", help="exact, Monte Carlo or both")
    parser.add_argument("--trials", type=_positive_int, default=10000, help="Monte Carlo trials (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="Monte Carlo seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def counts_from_index(
    root: Path, alpha: float, categories: list[str] | None, json_set: str, resolution: str, balance: str = "types"
) -> list[int]:
    """Images per sampler class of the training split, Real-IAD's 8 types (``data.balance``: ``types`` counts per
    defect type then normal, ``binary`` any defect then normal; classes without images left out)."""
    from mtfcdd.core.defect_types import DEFECT_CODES
    from mtfcdd.data.realiad import load_split

    records = load_split(
        root, split="train", json_set=json_set, alpha=alpha, resolution=resolution, categories=categories
    )
    per_class = Counter(sampler_classes(records, balance, len(DEFECT_CODES)))
    return [per_class[index] for index in sorted(per_class)]


def format_balanced_epochs(rows: list[tuple[BalancedEpoch, float]], alpha: float | None) -> str:
    """Table 2 columns, one line per method; ``rows`` holds (result, seconds taken)."""
    header = [
        "method",
        "alpha",
        "total images",
        "classes",
        "mu_T",
        "+- stderr",
        "mu_T^batch",
        "std iterations",
        "std epochs",
        "seconds",
    ]
    lines = [header]
    for result, seconds in rows:
        lines.append(
            [
                result.estimate.method,
                "-" if alpha is None else f"{alpha:g}",
                f"{result.total_images:,}",
                str(result.classes),
                f"{result.draws:,.2f}",
                f"{result.estimate.stderr:,.2f}",
                f"{result.batches:,.2f}",
                f"{result.standard_iterations:,.1f}",
                f"{result.standard_epochs:.2f}",
                f"{seconds:.3f}",
            ]
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the expected balanced-epoch length for the given class counts (a table or JSON); returns 0."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.alpha is None and (args.data_root or args.categories or args.balance != "types"):
        parser.error(
            "--data-root and --categories go with --alpha, as does --balance (with --counts the counts are given)"
        )
    if args.alpha is not None:
        if args.data_root is None:
            parser.error("--alpha needs --data-root DIR (the Real-IAD root)")
        try:
            counts = counts_from_index(
                args.data_root, args.alpha, args.categories, args.json_set, args.resolution, args.balance
            )
        except (UserError, OSError, ValueError) as err:
            parser.exit(2, f"{parser.prog}: error: reading the training index under {args.data_root}: {err}\n")
        if not counts:
            parser.exit(2, f"{parser.prog}: error: no training images under {args.data_root} at alpha {args.alpha}\n")
    else:
        counts = args.counts

    rows = []
    for method in METHODS if args.method == "both" else (args.method,):
        start = time.perf_counter()
        try:
            result = balanced_epoch(counts, args.batch_size, method=method, trials=args.trials, seed=args.seed)
        except ValueError as err:
            parser.error(str(err))
        rows.append((result, time.perf_counter() - start))
    if args.json:
        payload = [
            {**result.as_dict(), "alpha": args.alpha, "counts": list(result.counts), "seconds": seconds}
            for result, seconds in rows
        ]
        print(json.dumps(payload, indent=2))
    else:
        print(format_balanced_epochs(rows, args.alpha))
    return 0


if __name__ == "__main__":
    sys.exit(main())
