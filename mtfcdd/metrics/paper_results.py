"""The paper's published means on Real-IAD (fuiad training splits; percent), and when a run is comparable to them.

Mode ``multi``: the Mean rows of Tables 3 (I-AUROC, AP, F1m) and 4 (P-AUROC, AUPRO); mode ``single``: the
MultiTypeFCDD row of Table 5 (I-AUROC, AUPRO). All under the authors' evaluation: any defect pixel is a pixel
positive, the image score is the maximum of the map, the whole 30-category test set.
"""

from __future__ import annotations

from omegaconf import DictConfig

from mtfcdd.core.defect_types import REALIAD_VOCABULARY, vocabulary_of

PAPER_MEANS: dict[str, dict[float, dict[str, float]]] = {
    "multi": {
        0.1: {"i_auroc": 94.6, "ap": 56.0, "f1max": 56.8, "p_auroc": 92.1, "aupro": 66.3},
        0.2: {"i_auroc": 96.1, "ap": 64.9, "f1max": 63.4, "p_auroc": 92.0, "aupro": 68.4},
        0.4: {"i_auroc": 95.8, "ap": 64.1, "f1max": 61.4, "p_auroc": 93.4, "aupro": 68.8},
    },
    "single": {
        0.1: {"i_auroc": 94.1, "aupro": 75.2},
        0.2: {"i_auroc": 95.5, "aupro": 75.4},
        0.4: {"i_auroc": 96.4, "aupro": 79.9},
    },
}

REAL_DATA_TARGET = "mtfcdd.data.datamodule.RealIADDataModule"


def paper_setting_mismatches(cfg: DictConfig, mode: str) -> list[str]:
    """Why the test numbers of a run (config ``cfg``, network ``mode``) cannot stand beside the paper's (empty: they
    can): the data must be the real Real-IAD fuiad split of every category with the whole test set, evaluated under
    the ``paper`` protocol with the ``max`` image score, at a published alpha, on Real-IAD's 8 types."""
    data, evaluation = cfg.data, cfg.model.evaluation
    codes = vocabulary_of(cfg).codes
    checks = {
        f"data is {data.get('_target_')}, not the Real-IAD release": data.get("_target_") == REAL_DATA_TARGET,
        f"the defect types are {', '.join(codes)}, not Real-IAD's 8": codes == REALIAD_VOCABULARY.codes,
        f"data.json_set={data.get('json_set')}, not fuiad": data.get("json_set") == "fuiad",
        "data.categories is a subset": data.get("categories") is None,
        "data.test_max_images subsamples the test set": data.get("test_max_images") is None,
        f"model.evaluation.protocol={evaluation.protocol}, not paper": evaluation.protocol == "paper",
        f"model.evaluation.image_score={evaluation.image_score}, not max": evaluation.image_score == "max",
        f"alpha={cfg.get('alpha')} has no published row": cfg.get("alpha") in PAPER_MEANS.get(mode, {}),
    }
    return [reason for reason, ok in checks.items() if not ok]


def paper_means(cfg: DictConfig, mode: str) -> dict[str, float] | None:
    """The published means (percent) for the run's alpha and ``mode``, or None when the run is not the paper's
    setting (see ``paper_setting_mismatches``)."""
    if paper_setting_mismatches(cfg, mode):
        return None
    return dict(PAPER_MEANS[mode][cfg.alpha])
