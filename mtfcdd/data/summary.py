"""Images per split x class (the run's defect codes + OK), optionally per category: rows for loggers, a text table for
people."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from mtfcdd.core.defect_types import NORMAL_CLASS
from mtfcdd.data.realiad import Record


def summary_rows(
    splits: Mapping[str, Sequence[Record]], defect_codes: Sequence[str], by_category: bool = False
) -> list[dict[str, str | int]]:
    """One row per split (category ``"all"``), followed by one per category of that split when ``by_category``.

    Each row: ``split``, ``category``, one count per defect code (the run vocabulary's codes, in channel order,
    which the records' ``type_index`` indexes), ``OK`` (normal images, including NG views labelled OK) and ``total``.
    """

    def row(split: str, category: str, records: Sequence[Record]) -> dict[str, str | int]:
        counts = Counter(r.type_index for r in records)
        values = {name: counts[index] for index, name in enumerate(defect_codes)}
        return {"split": split, "category": category, **values, NORMAL_CLASS: counts[-1], "total": len(records)}

    rows = []
    for split, records in splits.items():
        rows.append(row(split, "all", records))
        if by_category:
            per_category: dict[str, list[Record]] = {}
            for record in records:
                per_category.setdefault(record.category, []).append(record)
            rows.extend(row(split, category, found) for category, found in sorted(per_category.items()))
    return rows


def format_summary_table(rows: Sequence[Mapping[str, str | float]]) -> str:
    """Fixed-width text table of ``rows`` (columns of the first row): text left-aligned, numbers right-aligned."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    numeric = [isinstance(rows[0][c], (int, float)) for c in columns]
    cells = [[f"{row[c]:,}" if num else str(row[c]) for c, num in zip(columns, numeric)] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(columns), rule, *(line(values) for values in cells)])
