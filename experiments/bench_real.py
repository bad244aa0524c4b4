"""Real images: MultiTypeFCDD against three references on ELPV's mono solar cells (``make bench-real``).

    python experiments/bench_real.py [--out data/elpv-mono] [--runs logs/bench_real/<time>] [--seed 42]
        [--skip mtfcdd,patchcore,probe,classifier] [-- <extra train overrides for MultiTypeFCDD>]

1. Writes ELPV's **mono** cells (PyPI ``elpv-dataset``, CC BY-NC-SA 4.0, read at run time, never committed) into the
   per-type layout (``good`` = probability 0, ``defect`` = probability 1); the 1/3 and 2/3 cells go aside as
   "unsure" and are never trained on. The poly cells are never read.
2. Splits the cells as ``data=folder`` does (seeded, stratified; the defaults: about 63 / 7 / 30 %), and measures
   on the same held-out test cells, in one run:
   - MultiTypeFCDD: ``python -m mtfcdd.train data=folder data.root=<cells>`` with **no other override** (what a
     user gets by default);
   - PatchCore (``model=patchcore``), fitted on the good training cells;
   - a logistic regression on the same frozen backbone's pooled features (same labels);
   - EfficientNet-Lite0 fully fine-tuned as a binary classifier (same labels).
3. Writes ``results.md`` / ``results.json`` (I-AUROC, AP, F1max, training time, ms per image, where the unsure cells
   score) and ``heatmaps.png`` (MultiTypeFCDD's heatmaps on test cells) into ``--runs``.

Times are wall-clock seconds on this machine's CPU (named in the results), all methods in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from real_images import elpv
from real_images.references import Scored, batched, fine_tuned_classifier, linear_probe, load_images, score_cells

from mtfcdd.core.config import config_dir
from mtfcdd.core.defect_types import vocabulary_of
from mtfcdd.data.folder.index import read_folder
from mtfcdd.data.folder.realiad_json import split_documents, split_folder_of
from mtfcdd.data.folder.records import FolderIndex
from mtfcdd.data.folder.split import FolderSplit, split_folder
from mtfcdd.metrics.image_metrics import binary_image_metrics
from mtfcdd.model.checkpoint import load_pipeline
from mtfcdd.run.sweep import register_resolvers
from mtfcdd.viz.grids import figure_grid, figure_rows, save_png

TITLES = {
    "mtfcdd": "MultiTypeFCDD (data=folder defaults)",
    "patchcore": "PatchCore (good cells only)",
    "probe": "Logistic regression on pooled frozen features",
    "classifier": "EfficientNet-Lite0 fine-tuned classifier",
}


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it, with its core count."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def train_run(run_dir: Path, overrides: list[str]) -> float:
    """``python -m mtfcdd.train`` into ``run_dir``; returns its wall time in seconds (start-up, fit, validation and
    test stage included)."""
    command = [sys.executable, "-m", "mtfcdd.train", *overrides, f"hydra.run.dir={run_dir}", "logger=csv"]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    with (run_dir.parent / f"{run_dir.name}.log").open("w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


def tested_checkpoint(run: Path) -> Path:
    """The checkpoint the run's test stage tested (``results.json``), the one its figures and numbers are of."""
    return Path(json.loads((run / "results.json").read_text())["checkpoints"]["checkpoint"]["path"])


def check_same_split(run: Path, index: FolderIndex, split: FolderSplit) -> None:
    """Stop unless the run trained and tested on exactly the split the references use (its split files)."""
    for category, document in split_documents(index, split).items():
        stored = json.loads((split_folder_of(run / "split") / f"{category}.json").read_text())
        for part in ("train", "validation", "test"):
            if stored[part] != document[part]:
                raise RuntimeError(f"{run}: its {part} split of {category} is not the references' split")


def pipeline_scores(ckpt: Path, images: dict[str, torch.Tensor], seconds: float) -> Scored:
    """A trained run's any-defect image scores on the test and unsure cells (eager float32, batches of 32)."""
    pipeline, _ = load_pipeline(ckpt)
    return score_cells(lambda batch: pipeline(batch).anomaly_score, images, seconds)


def unsure_position(scored: Scored, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Where each unsure group scores between the good and the defective test cells: its median on the scale
    good median = 0, defective median = 1, and its share above the F1max threshold of the test cells."""
    good, bad = np.median(scored.test[~labels]), np.median(scored.test[labels])
    threshold = binary_image_metrics(scored.test, labels).f1_threshold
    return {
        name: {
            "median_position": float((np.median(values) - good) / (bad - good)),
            "share_flagged": float(np.mean(values >= threshold)),
            "count": len(values),
        }
        for name, values in scored.unsure.items()
    }


def heatmap_figure(ckpt: Path, images: torch.Tensor, labels: np.ndarray, path: Path) -> Path:
    """MultiTypeFCDD's calibrated heatmaps on test cells chosen by rank, not by hand: the defective cells ranked
    first, at 25 %, 50 % and 75 % of the defective cells' ranking by score, then the median good cell and the good cell
    scored highest (the hardest false alarm)."""
    pipeline, cfg = load_pipeline(ckpt)
    scores = batched(lambda b: pipeline(b).anomaly_score, images).numpy()
    defect = np.flatnonzero(labels)[np.argsort(-scores[labels])]
    good = np.flatnonzero(~labels)[np.argsort(-scores[~labels])]
    chosen = [defect[int(q * (len(defect) - 1))] for q in (0.0, 0.25, 0.5, 0.75)] + [good[len(good) // 2], good[0]]
    titles = ["defective, 1st", "defective, 25 %", "defective, 50 %", "defective, 75 %", "good, median", "good, top"]
    with torch.no_grad():
        outputs = pipeline(images[chosen])
    vocabulary = vocabulary_of(cfg)
    rows = figure_rows(images[chosen], outputs, titles)
    halves = [figure_grid(rows[k : k + 3], vocabulary.names, vocabulary.colours) for k in (0, 3)]
    gap = np.zeros((halves[0].shape[0], 8, 3), dtype=np.uint8)
    return save_png(np.concatenate([halves[0], gap, halves[1]], axis=1), path)


def recipe_backbone() -> DictConfig:
    """The backbone config of ``data=folder``'s default run (model, cut, weights): the probe's frozen features and
    the classifier's architecture and weights."""
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data=folder", "data.root=unused"])
    return cfg.model.backbone


def table(results: dict) -> str:
    """The markdown table of ``results``."""
    lines = [
        f"ELPV mono cells, test split: {results['counts']['test_good']} good, {results['counts']['test_defect']} "
        f"defective; CPU: {results['cpu']}",
        "",
        "| Method | I-AUROC | AP | F1max | training s | ms/img | 1/3 cells: median position, flagged | "
        "2/3 cells: median position, flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in results["methods"].items():
        unsure = [row["unsure"].get(k, {}) for k in ("unsure/p33", "unsure/p67")]
        cells = [
            f"{u.get('median_position', float('nan')):.2f}, {100 * u.get('share_flagged', float('nan')):.0f} %"
            for u in unsure
        ]
        lines.append(
            f"| {TITLES[name]} | {100 * row['i_auroc']:.1f} | {100 * row['ap']:.1f} | {100 * row['f1max']:.1f} | "
            f"{row['train_s']:.0f} | {row['ms_per_image']:.2f} | {cells[0]} | {cells[1]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (see the module's description); returns what ``results.json`` holds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/elpv-mono"), help="where the cells are written")
    parser.add_argument("--runs", type=Path, default=None, help="results folder (default logs/bench_real/<time>)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split and of every method")
    parser.add_argument("--image-size", type=int, default=224, help="input side of the probe and the classifier")
    parser.add_argument("--skip", default="", help="comma-separated methods to leave out")
    parser.add_argument("--classifier-epochs", type=int, default=12, help="fine-tuning epochs of the classifier")
    parser.add_argument("--prepare-only", action="store_true", help="write the cells and stop")
    parser.add_argument("overrides", nargs="*", help="extra train overrides for MultiTypeFCDD (after --)")
    args = parser.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(TITLES):
        parser.error(f"--skip {args.skip}: expected some of {', '.join(TITLES)}")
    torch.manual_seed(args.seed)

    counts = elpv.write_mono_cells(args.out)
    print(f"ELPV mono cells in {args.out}: {counts} ({elpv.LICENCE})")
    if args.prepare_only:
        return {"counts": counts}
    runs = args.runs or Path("logs/bench_real") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    runs.mkdir(parents=True, exist_ok=True)
    cells = args.out / "cells"
    index = read_folder(cells)
    split = split_folder(index, seed=args.seed)
    paths = {name: [image.image for image in getattr(split, name)] for name in ("train", "val", "test")}
    labels = {name: np.array([image.type is not None for image in getattr(split, name)]) for name in paths}
    unsure = {f"unsure/{p.name}": sorted(p.glob("*.png")) for p in sorted((args.out / "unsure").iterdir())}
    images = {name: load_images(p, args.image_size) for name, p in {**paths, **unsure}.items()}

    scored: dict[str, Scored] = {}
    seed = f"seed={args.seed}"
    if "mtfcdd" not in skip:
        run = runs / "mtfcdd"
        seconds = train_run(run, ["data=folder", f"data.root={cells}", seed, *args.overrides])
        check_same_split(run, index, split)
        scored["mtfcdd"] = pipeline_scores(tested_checkpoint(run), images, seconds)
    if "patchcore" not in skip:
        run = runs / "patchcore"
        seconds = train_run(run, ["data=folder", f"data.root={cells}", "model=patchcore", seed])
        check_same_split(run, index, split)
        scored["patchcore"] = pipeline_scores(tested_checkpoint(run), images, seconds)
    backbone = recipe_backbone()
    if "probe" not in skip:
        scored["probe"] = linear_probe(instantiate(backbone), images, labels)
    if "classifier" not in skip:
        scored["classifier"] = fine_tuned_classifier(
            backbone, images, labels, epochs=args.classifier_epochs, seed=args.seed
        )

    results = {
        "cpu": cpu_name(),
        "counts": {
            **counts,
            "test_good": int((~labels["test"]).sum()),
            "test_defect": int(labels["test"].sum()),
            "train": len(paths["train"]),
            "val": len(paths["val"]),
        },
        "methods": {},
    }
    for name, s in scored.items():
        metrics = binary_image_metrics(s.test, labels["test"])
        results["methods"][name] = {
            "i_auroc": metrics.auroc,
            "ap": metrics.ap,
            "f1max": metrics.f1max,
            "train_s": s.train_s,
            "ms_per_image": s.ms_per_image,
            "unsure": unsure_position(s, labels["test"]),
        }
    (runs / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (runs / "results.md").write_text(table(results))
    if "mtfcdd" in scored:
        heatmap_figure(tested_checkpoint(runs / "mtfcdd"), images["test"], labels["test"], runs / "heatmaps.png")
    print(table(results))
    return results


if __name__ == "__main__":
    main()
