"""The forward pass's maths live in model/ and the evaluator only measures: on bare maps (no pipeline outputs given)
the evaluator scores and views them exactly as the pipeline's steps would at scale 1."""

from __future__ import annotations

import warnings

import pytest
import torch

from mtfcdd.metrics.any_defect_channel import BARE_MAP_SCORES, bare_map_scores
from mtfcdd.metrics.evaluator import MultiTypeEvaluator, UndefinedMetricWarning
from mtfcdd.model.any_defect import any_defect_map, any_defect_scores
from mtfcdd.model.image_score import IMAGE_SCORES, image_scores

TYPES = ["pit", "scratch", "stain"]


def _batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    maps = torch.rand(6, len(TYPES), 16, 16, generator=generator) * torch.tensor([1.0, 3.0, 0.5]).view(1, -1, 1, 1)
    types = torch.tensor([-1, -1, 0, 1, 2, 1])
    masks = torch.zeros(6, 16, 16, dtype=torch.bool)
    masks[2:, 4:9, 5:11] = True
    return maps, masks, types


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_evaluator_scores_bare_maps_as_the_pipeline_does(dtype):
    assert BARE_MAP_SCORES == IMAGE_SCORES
    maps = _batch()[0].to(dtype)
    for kind in IMAGE_SCORES:
        assert torch.equal(bare_map_scores(maps, kind), image_scores(maps, kind)), kind


@pytest.mark.parametrize("image_score", IMAGE_SCORES)
def test_bare_maps_give_the_pipelines_any_defect_view_at_scale_one(image_score):
    maps, masks, types = _batch(1)
    ones = torch.ones(len(TYPES))
    scores = image_scores(maps, image_score)
    bare, given = (MultiTypeEvaluator(TYPES, image_score=image_score) for _ in range(2))
    bare.update(maps, masks, types)
    given.update(
        maps,
        masks,
        types,
        scores=scores,
        anomaly_map=any_defect_map(maps, ones),
        anomaly_score=any_defect_scores(scores, ones),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ours, theirs = bare.compute(), given.compute()
    assert ours["any_defect"] == theirs["any_defect"] and ours["types"] == theirs["types"]
    assert 0.0 < ours["any_defect"]["i_auroc"] < 1.0  # a real entry, not an undefined one
