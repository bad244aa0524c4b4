"""The streaming evaluator against independent exact computations on every pixel (sorting, brute force).

Test data carries what breaks binned metrics: ties, outliers (1e3..1e6 x the rest), negative scores, several
8-connected regions per mask (some touching only diagonally), and a type without images.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from skimage.measure import label as skimage_label

from mtfcdd.metrics.aupro import aupro_from_counts, region_weights
from mtfcdd.metrics.evaluator import _STATES as STATES
from mtfcdd.metrics.evaluator import METRICS, MultiTypeEvaluator, UndefinedMetricWarning
from mtfcdd.metrics.image_metrics import binary_image_metrics, type_classification
from mtfcdd.metrics.pixel_curves import (
    NUM_BINS,
    HistogramRows,
    add_rows,
    float_bins,
    fold_rows,
    histogram_rows,
    roc_auc_from_counts,
    type_histograms,
)
from mtfcdd.metrics.result_views import f1_thresholds, flat_metrics
from mtfcdd.model.any_defect import fit_any_defect

TYPES = ["pit", "scratch", "damage", "stain"]
EMPTY_TYPE = 3  # no test image has this type
SIZE = 24
TOL = 1e-3
PER_IMAGE = ("scores", "types", "predicted", "image_scopes")


# ---------------------------------------------------------------- exact references (independent of mtfcdd code)


def exact_auroc_pairs(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score_pos > score_neg) + 0.5 P(tie), over every pair (brute force; small N)."""
    pos, neg = scores[positive][:, None], scores[~positive][None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def exact_auroc_ranks(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney U / (P N) with mid-ranks for ties (sorting every pixel)."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    mid_rank = first_rank + (counts - 1) / 2.0
    ranks = mid_rank[inverse]
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def brute_force_ap_f1(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float, float]:
    """(AP as scikit-learn, F1-max, its threshold) by counting at every distinct threshold, high to low."""
    ap, best_f1, best_t, previous_recall = 0.0, -1.0, math.nan, 0.0
    for t in np.unique(scores)[::-1]:
        predicted = scores >= t
        tp = np.sum(predicted & positive)
        precision, recall = tp / predicted.sum(), tp / positive.sum()
        ap += (recall - previous_recall) * precision
        previous_recall = recall
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        if f1 > best_f1:
            best_f1, best_t = f1, t
    return float(ap), float(best_f1), float(best_t)


def exact_aupro(scores: np.ndarray, positive: np.ndarray, limit: float = 0.3) -> float:
    """AUPRO with every distinct score as a threshold. scores, positive: [N, H, W]; negatives = ~positive.

    Regions: 8-connected components (skimage, connectivity=2) of each image's positive mask. The piecewise
    linear curve (0, 0), (FPR(t), PRO(t)) for t high to low is integrated segment by segment, clipped at ``limit``.
    """
    regions = []
    for image_scores, image_mask in zip(scores, positive):
        labels = skimage_label(image_mask, connectivity=2)
        regions += [np.sort(image_scores[labels == r]) for r in range(1, labels.max() + 1)]
    negatives = np.sort(scores[~positive])
    thresholds = np.unique(scores)[::-1]
    fpr = (len(negatives) - np.searchsorted(negatives, thresholds, side="left")) / len(negatives)
    overlap = [(len(r) - np.searchsorted(r, thresholds, side="left")) / len(r) for r in regions]
    pro = np.mean(overlap, axis=0)
    fpr, pro = np.r_[0.0, fpr], np.r_[0.0, pro]
    area = 0.0
    for f0, f1, p0, p1 in zip(fpr[:-1], fpr[1:], pro[:-1], pro[1:]):
        if f0 >= limit:
            break
        if f1 == f0:
            continue
        end = min(f1, limit)
        p_end = p0 + (p1 - p0) * (end - f0) / (f1 - f0)
        area += (end - f0) * (p0 + p_end) / 2.0
    return area / limit


# ---------------------------------------------------------------- test data


def make_data(seed: int, num_images: int = 24, num_types: int = len(TYPES), size: int = SIZE):
    """Maps [N, M, S, S] float32, masks bool [N, S, S], type_index int64 [N], categories [N]."""
    rng = np.random.default_rng(seed)
    types = rng.integers(-1, EMPTY_TYPE, num_images)  # -1 (normal), 0 .. EMPTY_TYPE - 1
    types[:4] = [-1, 0, 1, 2]
    maps = rng.lognormal(mean=0.0, sigma=1.0, size=(num_images, num_types, size, size))
    masks = np.zeros((num_images, size, size), dtype=bool)
    for i in np.flatnonzero(types >= 0):
        for _ in range(rng.integers(1, 4)):  # a few rectangles (may merge)
            y, x = rng.integers(0, size - 6, 2)
            masks[i, y : y + rng.integers(2, 6), x : x + rng.integers(2, 6)] = True
        y, x = rng.integers(0, size - 2, 2)
        masks[i, y, x] = masks[i, y + 1, x + 1] = True  # touching only diagonally: one region
        maps[i, types[i]][masks[i]] += rng.uniform(0.5, 3.0)  # the right channel responds on its defects
    maps[:, 1] -= 2.0  # a channel with negative scores
    tied = rng.random(maps.shape) < 0.3
    maps[tied] = np.round(maps[tied] * 4) / 4  # ties
    outliers = rng.random(maps.shape) < 2e-4
    maps[outliers] *= 10.0 ** rng.uniform(3, 6, outliers.sum())
    categories = [("bottle", "cable", "screw")[i % 3] for i in range(num_images)]
    return torch.from_numpy(maps.astype(np.float32)), torch.from_numpy(masks), torch.from_numpy(types), categories


def exact_results(maps, masks, types, *, protocol="paper", image_score="max", mode="multi") -> dict:
    """type name -> every metric, computed exactly on all pixels."""
    maps, masks, types = maps.numpy().astype(np.float64), masks.numpy(), types.numpy()
    names = TYPES if mode == "multi" else ["anomaly"]
    out = {}
    for k, name in enumerate(names):
        image_positive = types >= 0 if mode == "single" else types == k
        if image_score == "max":
            scores = maps[:, k].max(axis=(1, 2))
        else:
            scores = maps[:, k].astype(np.float32).mean(axis=(1, 2))
        pixel_positive = masks if mode == "single" or protocol == "paper" else masks & image_positive[:, None, None]
        entry = dict.fromkeys(METRICS, math.nan)
        if image_positive.any():
            entry["i_auroc"] = exact_auroc_pairs(scores, image_positive)
            entry["ap"], entry["f1max"], entry["f1_threshold"] = brute_force_ap_f1(scores, image_positive)
        if pixel_positive.any():
            entry["p_auroc"] = exact_auroc_ranks(maps[:, k].ravel(), pixel_positive.ravel())
            entry["aupro"] = exact_aupro(maps[:, k], pixel_positive)
        out[name] = entry
    return out


def evaluate(maps, masks, types, categories=None, batch_size=8, **options) -> dict:
    names = TYPES if options.get("mode", "multi") == "multi" else ["anomaly"]
    evaluator = MultiTypeEvaluator(names, **options)
    for start in range(0, len(maps), batch_size):
        part = slice(start, start + batch_size)
        evaluator.update(maps[part], masks[part], types[part], None if categories is None else categories[part])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return evaluator.compute()


def assert_close_to_exact(results: dict, exact: dict) -> None:
    for name, reference in exact.items():
        for metric in METRICS:
            ours, theirs = results["types"][name][metric], reference[metric]
            if math.isnan(theirs):
                assert math.isnan(ours), (name, metric, ours)
            elif metric in ("p_auroc", "aupro"):  # streamed: binned
                assert abs(ours - theirs) < TOL, (name, metric, ours, theirs)
            else:  # image level: exact
                assert ours == pytest.approx(theirs, abs=1e-12), (name, metric, ours, theirs)
        if not math.isnan(reference["f1max"]):
            assert results["types"][name]["f1_threshold"] == pytest.approx(reference["f1_threshold"], rel=1e-6)
        assert 0.0 <= results["types"][name]["aupro"] <= 1.0 or math.isnan(reference["aupro"])


# ---------------------------------------------------------------- the bin grid


def test_float_bins_are_monotone_over_the_whole_float_range():
    rng = np.random.default_rng(0)
    magnitudes = 10.0 ** rng.uniform(-40, 38, 20000)
    values = np.concatenate([magnitudes, -magnitudes, [0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45]]).astype(np.float32)
    values.sort()
    bins = float_bins(torch.from_numpy(values)).numpy().astype(np.int64)
    assert np.all(np.diff(bins) >= 0)
    assert bins.min() >= 0 and bins.max() < NUM_BINS
    zero_bins = float_bins(torch.tensor([0.0, -0.0])).tolist()
    assert zero_bins[0] == zero_bins[1]
    assert bins[0] == float_bins(torch.tensor([-np.inf])).item()
    assert bins[-1] == float_bins(torch.tensor([np.inf])).item()


def test_float_bins_have_relative_width_two_to_minus_ten():
    one_octave = torch.linspace(1.0, 2.0, 200001)[:-1]
    assert len(torch.unique(float_bins(one_octave))) == 1024
    x = torch.from_numpy(10.0 ** np.random.default_rng(1).uniform(-20, 20, 1000).astype(np.float32))
    assert (float_bins(x * (1 + 2.0**-9)) > float_bins(x)).all()
    assert (float_bins(-x * (1 + 2.0**-9)) < float_bins(-x)).all()


# ---------------------------------------------------------------- building blocks


def test_regions_are_eight_connected():
    mask = np.zeros((1, 8, 8), dtype=bool)
    mask[0, 1, 1] = mask[0, 2, 2] = mask[0, 3, 3] = True  # one diagonal region
    mask[0, 6, 0:3] = True  # a second region of 3 pixels
    weights, regions = region_weights(mask)
    assert regions.tolist() == [2]
    assert weights[0][mask[0]].tolist() == pytest.approx([1 / 3] * 6)
    assert weights.sum() == pytest.approx(2.0) and (weights[0][~mask[0]] == 0).all()


def test_image_metrics_match_brute_force_with_ties():
    rng = np.random.default_rng(2)
    for _ in range(20):
        scores = np.round(rng.normal(size=60), 1)
        positive = rng.random(60) < 0.3
        ours = binary_image_metrics(scores, positive)
        ap, f1, threshold = brute_force_ap_f1(scores, positive)
        assert ours.auroc == pytest.approx(exact_auroc_pairs(scores, positive), abs=1e-12)
        assert (ours.ap, ours.f1max, ours.f1_threshold) == pytest.approx((ap, f1, threshold), abs=1e-12)
    assert all(math.isnan(v) for v in vars(binary_image_metrics(np.ones(5), np.zeros(5, dtype=bool))).values())


def test_curves_from_histograms_equal_exact_when_every_value_has_its_own_bin():
    values = torch.tensor([[0.1, 0.2, 0.4], [0.8, 1.6, 3.2]])  # distinct bins
    positive = torch.tensor([[False, True, False], [True, False, True]])
    weights, regions = region_weights(positive.numpy()[None].reshape(1, 2, 3))
    rows = histogram_rows(values[None, None], positive[None, None], torch.from_numpy(weights))
    negatives, positives, mass = type_histograms(HistogramRows(*fold_rows(*rows)), 0)
    expected_auroc = exact_auroc_ranks(values.numpy().ravel(), positive.numpy().ravel())
    assert roc_auc_from_counts(negatives, positives) == pytest.approx(expected_auroc, abs=1e-12)
    expected = exact_aupro(values.numpy()[None], positive.numpy()[None])
    assert aupro_from_counts(negatives, mass, int(regions.sum())) == pytest.approx(expected, abs=1e-12)


def test_adding_rows_in_place_or_by_refolding_gives_the_same_histogram():
    rng = np.random.default_rng(14)
    batches = [torch.from_numpy(rng.lognormal(size=(2, 3, 5, 5)).astype(np.float32)) * s for s in (1, 1, 1e4, 1)]
    positive = torch.from_numpy(rng.random((2, 3, 5, 5)) < 0.3)
    weight = torch.full((2, 5, 5), 0.5, dtype=torch.float64)
    state = fold_rows(*histogram_rows(batches[0][:0], positive[:0], weight[:0]))
    for values in batches:
        state = add_rows(state, histogram_rows(values, positive, weight))
    joined = histogram_rows(torch.cat(batches), positive.repeat(4, 1, 1, 1), weight.repeat(4, 1, 1))
    for ours, theirs in zip(state, fold_rows(*joined)):
        assert torch.equal(ours, theirs)
    assert torch.equal(
        state[1].sum(dim=(0, 3)), torch.stack([(~positive).sum(dim=(0, 2, 3)), positive.sum(dim=(0, 2, 3))], 1) * 4
    )


def test_constant_maps_give_the_diagonal():
    """All scores tied: the ROC and PRO curves are the straight line to (1, 1): P-AUROC 1/2, AUPRO 0.3 / 2."""
    maps, masks, types, _ = make_data(seed=16, num_images=6)
    results = evaluate(torch.full_like(maps, 3.5), masks, types)
    for name in TYPES:
        assert results["types"][name]["p_auroc"] == pytest.approx(0.5, abs=1e-12)
        assert results["types"][name]["aupro"] == pytest.approx(0.15, abs=1e-12)
    assert results["types"]["pit"]["i_auroc"] == pytest.approx(0.5, abs=1e-12)


def test_type_classification_matches_a_direct_count():
    rng = np.random.default_rng(3)
    scores, truth = rng.random((50, 4)), rng.integers(0, 3, 50)
    scores[truth == 0, 0] += 0.5
    predicted = scores.argmax(axis=1)
    ours = type_classification(predicted, truth, 4)
    confusion = [[int(np.sum((truth == t) & (predicted == p))) for p in range(4)] for t in range(4)]
    assert ours["confusion"] == confusion
    assert ours["accuracy"] == pytest.approx(np.mean(predicted == truth))
    f1s = []
    for c in sorted(set(truth) | set(predicted)):
        tp = np.sum((truth == c) & (predicted == c))
        precision = tp / np.sum(predicted == c) if np.sum(predicted == c) else 0.0
        recall = tp / np.sum(truth == c) if np.sum(truth == c) else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    assert ours["macro_f1"] == pytest.approx(np.mean(f1s))


# ---------------------------------------------------------------- the evaluator against exact metrics


@pytest.mark.parametrize(
    "options",
    [
        {"protocol": "paper", "image_score": "max"},
        {"protocol": "typed", "image_score": "max"},
        {"protocol": "typed", "image_score": "mean"},
    ],
)
def test_streamed_metrics_match_exact_ones(options):
    maps, masks, types, _ = make_data(seed=4)
    results = evaluate(maps, masks, types, **options)
    assert_close_to_exact(results, exact_results(maps, masks, types, **options))
    means = results["mean"]
    for metric in METRICS:
        assert means[metric] == pytest.approx(np.nanmean([results["types"][n][metric] for n in TYPES]))


def test_typed_and_paper_protocols_differ_where_other_types_pixels_count():
    maps, masks, types, _ = make_data(seed=5)
    paper = evaluate(maps, masks, types, protocol="paper")
    typed = evaluate(maps, masks, types, protocol="typed")
    # each channel responds on its own type's defects only: one-vs-rest pixel scores are higher than any-defect ones
    for name in TYPES[:EMPTY_TYPE]:
        assert typed["types"][name]["p_auroc"] > paper["types"][name]["p_auroc"]
        assert typed["types"][name]["i_auroc"] == paper["types"][name]["i_auroc"]
        assert typed["types"][name]["regions"] < paper["types"][name]["regions"]


def test_single_mode_is_one_channel_against_any_defect():
    maps, masks, types, _ = make_data(seed=6)
    single = maps[:, :1] + maps[:, 2:3]  # a channel that responds to types 0 and 2
    results = evaluate(single, masks, types, mode="single")
    assert_close_to_exact(results, exact_results(single, masks, types, mode="single"))
    assert results["type_classification"] is None
    assert results["types"]["anomaly"]["positive_images"] == int((types >= 0).sum())


@pytest.mark.parametrize("protocol", ["paper", "typed"])
def test_any_defect_view_is_the_scaled_maximum_against_every_defect(protocol):
    """The any-defect entry: the pipeline's map and score (max over scaled channels), positives = every defect image
    and pixel whatever the protocol; without them, the unscaled maximum. Checked against the exact references."""
    maps, masks, types, _ = make_data(seed=14)
    scale = torch.tensor([0.5, 2.0, 1.0, 4.0], dtype=maps.dtype)
    scaled = (maps / scale.view(1, -1, 1, 1)).amax(dim=1)
    evaluator = MultiTypeEvaluator(TYPES, protocol=protocol)
    for start in range(0, len(maps), 8):
        part = slice(start, start + 8)
        evaluator.update(
            maps[part],
            masks[part],
            types[part],
            anomaly_map=scaled[part],
            anomaly_score=scaled[part].flatten(1).amax(dim=1),
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        results = evaluator.compute()
    exact = exact_results(scaled[:, None], masks, types, mode="single")["anomaly"]
    assert_close_to_exact({"types": {"any": results["any_defect"]}}, {"any": exact})
    assert results["any_defect"]["positive_images"] == int((types >= 0).sum())
    plain = evaluate(maps, masks, types, protocol=protocol)
    _assert_same_results(results, plain, tol=0.0)  # the types are untouched
    unscaled = plain["any_defect"]
    reference = exact_results(maps.amax(dim=1, keepdim=True), masks, types, mode="single")["anomaly"]
    assert_close_to_exact({"types": {"any": unscaled}}, {"any": reference})
    assert unscaled["i_auroc"] != results["any_defect"]["i_auroc"]  # the scaling matters on these maps
    flat = flat_metrics(results, "test")
    assert flat["test/i_auroc/any_defect"] == results["any_defect"]["i_auroc"]


def test_any_defect_scales_and_threshold_from_normal_validation_scores():
    rng = np.random.default_rng(15)
    types = np.r_[np.full(40, -1), rng.integers(0, 3, 20)]
    scores = rng.gamma(2.0, [1.0, 5.0, 0.2], size=(60, 3))
    scores[40:][np.arange(20), types[40:]] += 3.0
    scale, threshold = fit_any_defect(scores, types, quantile=0.9)
    assert scale == pytest.approx(np.quantile(scores[:40], 0.9, axis=0), rel=1e-6)
    any_scores = (scores.astype(np.float32) / scale).max(axis=1)
    _, best_f1, best_t = brute_force_ap_f1(any_scores.astype(np.float64), types >= 0)
    assert threshold == pytest.approx(best_t, rel=1e-6)
    assert fit_any_defect(scores[:, :1], types)[0].tolist() == [1.0]  # one channel: nothing to normalise across
    assert math.isinf(fit_any_defect(scores[:40], types[:40])[1])  # no defect image: never decides


@pytest.mark.parametrize("protocol", ["paper", "typed"])
def test_type_without_images_is_nan_with_a_warning_naming_it(protocol):
    maps, masks, types, _ = make_data(seed=7)
    evaluator = MultiTypeEvaluator(TYPES, protocol=protocol)
    evaluator.update(maps, masks, types)
    with pytest.warns(UndefinedMetricWarning, match=TYPES[EMPTY_TYPE]) as caught:
        results = evaluator.compute()
    assert all(TYPES[EMPTY_TYPE] in str(w.message) for w in caught if issubclass(w.category, UndefinedMetricWarning))
    entry = results["types"][TYPES[EMPTY_TYPE]]
    assert all(math.isnan(entry[m]) for m in ("i_auroc", "ap", "f1max"))
    # paper: every channel is scored against all defect pixels, so its pixel metrics exist; typed: no positives
    assert math.isnan(entry["p_auroc"]) == math.isnan(entry["aupro"]) == (protocol == "typed")
    assert not any(math.isnan(results["mean"][m]) for m in METRICS)
    defined = [results["types"][n]["i_auroc"] for n in TYPES[:EMPTY_TYPE]]
    assert results["mean"]["i_auroc"] == pytest.approx(np.mean(defined))
    assert f1_thresholds(results)[EMPTY_TYPE] == math.inf


def test_outliers_do_not_move_the_streamed_metrics():
    maps, masks, types, _ = make_data(seed=8)
    spiked = maps.clone()
    spiked[0, :, 0, 0] = 1e30  # one normal image's corner pixel, far above everything
    base = evaluate(maps, masks, types)
    spiked_results = evaluate(spiked, masks, types)
    for name in TYPES[:EMPTY_TYPE]:
        for metric in ("p_auroc", "aupro"):
            assert abs(spiked_results["types"][name][metric] - base["types"][name][metric]) < 1e-3
    assert_close_to_exact(spiked_results, exact_results(spiked, masks, types))


def test_type_classification_of_the_evaluator():
    maps, masks, types, _ = make_data(seed=9)
    results = evaluate(maps, masks, types)
    anomalous = types.numpy() >= 0
    predicted = maps.amax(dim=(2, 3)).numpy()[anomalous].argmax(axis=1)
    assert results["type_classification"] == type_classification(predicted, types.numpy()[anomalous], len(TYPES))
    assert results["type_classification"]["num_images"] == int(anomalous.sum())


def test_the_evaluator_scores_and_classifies_what_the_pipeline_gives():
    maps, masks, types, _ = make_data(seed=10)
    rng = np.random.default_rng(10)
    scores = torch.from_numpy(rng.random((len(types), len(TYPES))))
    predicted = torch.from_numpy(rng.integers(0, len(TYPES), len(types)))
    evaluator = MultiTypeEvaluator(TYPES, protocol="typed")
    evaluator.update(maps, masks, types, scores=scores, predicted_type=predicted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        results = evaluator.compute()
    anomalous = types.numpy() >= 0
    expected = type_classification(predicted.numpy()[anomalous], types.numpy()[anomalous], len(TYPES))
    assert results["type_classification"] == expected
    checked = 0
    for k, name in enumerate(TYPES):  # image metrics follow the given scores, not the maps
        exact = binary_image_metrics(scores[:, k].numpy(), types.numpy() == k)
        if not math.isnan(exact.auroc):
            assert results["types"][name]["i_auroc"] == pytest.approx(exact.auroc, abs=1e-12)
            checked += 1
    assert checked >= 2


# ---------------------------------------------------------------- streaming, merging, categories


def _assert_same_results(a: dict, b: dict, tol: float = 1e-12) -> None:
    for name in TYPES:
        for key, value in a["types"][name].items():
            other = b["types"][name][key]
            assert (math.isnan(value) and math.isnan(other)) or value == pytest.approx(other, abs=tol), (name, key)
    assert a["type_classification"] == b["type_classification"]
    assert a["counts"] == b["counts"]


def test_batch_size_does_not_change_results():
    maps, masks, types, _ = make_data(seed=10)
    _assert_same_results(evaluate(maps, masks, types, batch_size=len(maps)), evaluate(maps, masks, types, batch_size=5))


def test_merge_of_two_evaluators_equals_one():
    maps, masks, types, _ = make_data(seed=11)
    first, second = MultiTypeEvaluator(TYPES, protocol="typed"), MultiTypeEvaluator(TYPES, protocol="typed")
    first.update(maps[:10], masks[:10], types[:10])
    second.update(maps[10:] * 1e4, masks[10:], types[10:])  # other octaves: the block layouts differ
    first.merge(second)
    joined = torch.cat([maps[:10], maps[10:] * 1e4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        _assert_same_results(first.compute(), evaluate(joined, masks, types, protocol="typed"))
    with pytest.raises(ValueError, match="protocol"):
        first.merge(MultiTypeEvaluator(TYPES, protocol="paper"))


def test_per_category_breakdown_equals_evaluating_each_category_alone():
    maps, masks, types, categories = make_data(seed=12, num_images=30)
    results = evaluate(maps, masks, types, categories, per_category=True, protocol="typed")
    _assert_same_results(results, evaluate(maps, masks, types, protocol="typed"))
    assert sorted(results["per_category"]) == ["bottle", "cable", "screw"]
    for category, scope in results["per_category"].items():
        rows = [i for i, c in enumerate(categories) if c == category]
        alone = evaluate(maps[rows], masks[rows], types[rows], protocol="typed")
        _assert_same_results(scope, alone)
        assert scope["mean"] == pytest.approx(alone["mean"], nan_ok=True)


def _distributed_worker(rank: int, init_file: str, out_file: str, split: int) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    maps, masks, types, categories = make_data(seed=13)
    share = slice(0, split) if rank == 0 else slice(split, None)
    evaluator = MultiTypeEvaluator(TYPES, per_category=True)
    for start in range(share.start or 0, share.stop or len(maps), 4):  # a few batches; none on an empty share
        batch = slice(start, min(start + 4, share.stop or len(maps)))
        evaluator.update(maps[batch] * (1 + 1e5 * rank), masks[batch], types[batch], categories[batch])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message=".*was called before the ``update`` method")
        results = evaluator.compute()
    if rank == 0:
        torch.save(results, out_file)
    dist.destroy_process_group()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("split", [9, 24], ids=["uneven shares", "rank 1 without images"])
def test_metrics_of_two_ranks_equal_those_of_one_process_on_the_same_images(tmp_path, split):
    """torchmetrics gathers the ranks' states (other octaves and categories on each rank, or none at all)."""
    torch.multiprocessing.spawn(
        _distributed_worker, args=(str(tmp_path / "init"), str(tmp_path / "out.pt"), split), nprocs=2
    )
    gathered = torch.load(tmp_path / "out.pt", weights_only=False)
    maps, masks, types, categories = make_data(seed=13)
    scaled = torch.cat([maps[:split], maps[split:] * (1 + 1e5)])
    single = evaluate(scaled, masks, types, categories, per_category=True)
    _assert_same_results(gathered, single)
    assert gathered["per_category"].keys() == single["per_category"].keys()
    for category in single["per_category"]:
        _assert_same_results(gathered["per_category"][category], single["per_category"][category])


def test_state_size_does_not_grow_with_the_number_of_images():
    maps, masks, types, _ = make_data(seed=17, num_images=8)
    evaluator = MultiTypeEvaluator(TYPES, protocol="typed")
    sizes = []
    for _ in range(5):
        evaluator.update(maps, masks, types)
        sizes.append(sum(getattr(evaluator, name)[0].numel() for name in STATES if name not in PER_IMAGE))
    assert len(set(sizes)) == 1, sizes
    assert all(len(getattr(evaluator, name)) == 1 for name in STATES)  # folded: one tensor per state


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m, k, t: (m[:, :2], k, t), r"maps: expected a float tensor \[B, 4, H, W\]"),
        (lambda m, k, t: (m, k[:, :5], t), "masks: expected a bool tensor"),
        (lambda m, k, t: (m, k, t.float()), "type_index: expected an int tensor"),
        (lambda m, k, t: (m, k, torch.full_like(t, 4)), "type_index: values must be < 4"),
        (lambda m, k, t: (m, k | True, t), r"masks: batch image 0 is normal \(type_index -1\)"),
        (lambda m, k, t: (m.index_put((torch.tensor([1]),), torch.tensor(float("nan"))), k, t), "maps: contain NaN"),
    ],
)
def test_bad_batches_are_rejected_with_the_argument_named(change, message):
    maps, masks, types, _ = make_data(seed=14, num_images=4)
    evaluator = MultiTypeEvaluator(TYPES)
    with pytest.raises(ValueError, match=message):
        evaluator.update(*change(maps, masks, types))
    assert all(getattr(evaluator, name)[0].numel() == 0 for name in STATES)  # nothing was half-added


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="protocol='pixel'"):
        MultiTypeEvaluator(TYPES, protocol="pixel")
    with pytest.raises(ValueError, match="image_score"):
        MultiTypeEvaluator(TYPES, image_score="median")
    with pytest.raises(ValueError, match="mode='single' evaluates one channel"):
        MultiTypeEvaluator(TYPES, mode="single")
    with pytest.raises(ValueError, match="category: per_category=True"):
        maps, masks, types, _ = make_data(seed=15, num_images=4)
        MultiTypeEvaluator(TYPES, per_category=True).update(maps, masks, types)
