"""experiments/real_images: ELPV's mono cells written into the per-type layout that data=folder reads; the poly
cells never leave the package."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from real_images import elpv

from mtfcdd.data.folder.index import read_folder

ROWS = [  # ELPV's labels.csv: path, defect probability, module kind (whitespace columns)
    ("cell0001.png", "1.0", "mono"),
    ("cell0002.png", "0.0", "mono"),
    ("cell0003.png", "0.3333333333333333", "mono"),
    ("cell0004.png", "0.6666666666666666", "mono"),
    ("cell0005.png", "0.0", "poly"),
    ("cell0006.png", "1.0", "poly"),
    ("cell0007.png", "0.0", "mono"),
    ("cell0008.png", "1.0", "mono"),
]


def _package(root: Path) -> Path:
    """A copy of elpv-dataset's data folder: gray 300x300 PNGs and labels.csv."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, _, _ in ROWS:
        Image.fromarray(rng.integers(0, 256, (300, 300), dtype=np.uint8), mode="L").save(root / "images" / name)
    labels = root / "labels.csv"
    labels.write_text("".join(f"images/{name}  {p:<20}{kind}\n" for name, p, kind in ROWS))
    return labels


def test_mono_cells_go_to_good_defect_and_unsure_and_poly_cells_nowhere(tmp_path):
    labels = _package(tmp_path / "package")
    out = tmp_path / "elpv-mono"
    counts = elpv.write_mono_cells(out, labels)
    assert counts == {"cells/defect": 2, "cells/good": 2, "unsure/p33": 1, "unsure/p67": 1}
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == [
        "cells/defect/cell0001.png",
        "cells/defect/cell0008.png",
        "cells/good/cell0002.png",
        "cells/good/cell0007.png",
        "unsure/p33/cell0003.png",
        "unsure/p67/cell0004.png",
    ]  # cell0005 and cell0006 (poly) are not there
    assert (out / "cells" / "good" / "cell0002.png").read_bytes() == (
        tmp_path / "package/images/cell0002.png"
    ).read_bytes()
    index = read_folder(out / "cells")  # what data=folder reads: one type, no masks, every cell kept
    assert index.types == ("defect",) and len(index.images) == 4 and not index.skipped
    assert "CC BY-NC-SA 4.0" in (out / "LICENCE.txt").read_text()
    assert not list(tmp_path.glob("*.partial"))
    (labels.parent / "images" / "cell0001.png").unlink()
    assert elpv.write_mono_cells(out, labels) == counts  # a complete tree is kept, not written again


def test_a_probability_elpv_does_not_have_is_refused(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("images/cell0001.png  0.5  mono\n")
    with pytest.raises(ValueError, match=r"ELPV probability 0.5: expected 0, 1/3, 2/3 or 1"):
        elpv.write_mono_cells(tmp_path / "out", labels)
    assert not (tmp_path / "out").exists()
