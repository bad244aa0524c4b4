"""Views of an evaluator's results dict: the flat keys loggers take, and the calibrated F1 thresholds."""

from __future__ import annotations

import math

from mtfcdd.metrics.evaluator import ANY_DEFECT, METRICS


def flat_metrics(results: dict, prefix: str) -> dict[str, float]:
    """``{prefix}/{metric}/{type, 'mean' or 'any_defect'}`` -> value for every metric of all images, plus
    ``{prefix}/type_accuracy`` and ``{prefix}/type_macro_f1`` in mode multi (for loggers)."""
    flat = {f"{prefix}/{m}/{name}": entry[m] for name, entry in results["types"].items() for m in METRICS}
    flat.update({f"{prefix}/{m}/mean": results["mean"][m] for m in METRICS})
    flat.update({f"{prefix}/{m}/{ANY_DEFECT}": results[ANY_DEFECT][m] for m in METRICS})
    classification = results["type_classification"]
    if classification is not None:
        flat[f"{prefix}/type_accuracy"] = classification["accuracy"]
        flat[f"{prefix}/type_macro_f1"] = classification["macro_f1"]
    return flat


def f1_thresholds(results: dict) -> list[float]:
    """Per type, the image-score threshold that reaches F1-max (``inf`` where undefined: never fires)."""
    return [
        math.inf if math.isnan(entry["f1_threshold"]) else entry["f1_threshold"] for entry in results["types"].values()
    ]
