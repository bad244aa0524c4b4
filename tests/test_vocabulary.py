"""A run's defect types are data: the vocabulary, its palette, and everything that counts, names or colours a channel
following it (Real-IAD's 8 by default; 3 and 12 types of one's own)."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
from omegaconf import OmegaConf, open_dict

from helpers.folder_trees import TWELVE_TYPES, TYPES, make_types_tree
from helpers.hydra_compose import compose_config
from mtfcdd.callbacks.predictions import PredictionWriter
from mtfcdd.core.config import ConfigError
from mtfcdd.core.defect_types import (
    ANY_DEFECT_COLOUR,
    DEFECT_TYPES,
    PALETTE,
    REALIAD_VOCABULARY,
    DefectType,
    Vocabulary,
    palette_colour,
    vocabulary_of,
)
from mtfcdd.data.datamodule import RealIADDataModule
from mtfcdd.export import export, export_metadata
from mtfcdd.model.build import build_module
from mtfcdd.model.checkpoint import load_pipeline
from mtfcdd.model.components.config import type_colours, type_names
from mtfcdd.report.jobs import Job
from mtfcdd.report.jobs import type_colours as report_colours
from mtfcdd.run.build import VOCABULARY_KEY, build_datamodule
from mtfcdd.sampling.balance import num_sampler_classes, sampler_classes
from mtfcdd.sampling.epoch_callback import BalancedEpochLength

FAST = ["debug=limit", "logger=none", "data.num_workers=0", "data.image_size=64"]
RUST = [10, 200, 90]
"""The override colour of the 3-type runs' ``rust``."""


def _lab(rgb) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of an sRGB colour 0-255."""

    def linear(u: float) -> float:
        u /= 255
        return ((u + 0.055) / 1.055) ** 2.4 if u > 0.04045 else u / 12.92

    r, g, b = map(linear, rgb)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


# ---------------------------------------------------------------------------------------------------- the vocabulary


def test_a_vocabulary_round_trips_through_its_config():
    vocabulary = Vocabulary.from_codes(["crack", "AK", "dent"], names={"dent": "Dent"}, colours={"crack": [1, 2, 3]})
    assert vocabulary.codes == ("crack", "AK", "dent") and vocabulary.names == ("crack", "pit", "Dent")
    assert len(vocabulary) == 3 and vocabulary.index("dent") == 2 and vocabulary.name_of("AK") == "pit"
    assert vocabulary.colour("crack") == (1, 2, 3) and vocabulary.colour("pit") == (255, 60, 60)
    assert vocabulary.colour("anomaly") == ANY_DEFECT_COLOUR  # a channel that is no type
    config = vocabulary.to_config()
    assert config[0] == {"code": "crack", "name": "crack", "colour": [1, 2, 3]}
    assert Vocabulary.from_config(config) == vocabulary
    assert Vocabulary.from_config(OmegaConf.create(config)) == vocabulary  # as a checkpoint's config holds it
    assert json.loads(json.dumps(config)) == config  # plain data (weights_only checkpoints, JSON)
    with pytest.raises(ConfigError, match="not in the run's vocabulary: crack, AK, dent"):
        vocabulary.index("rust")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Vocabulary.from_codes([]), r"data.vocabulary is empty"),
        (lambda: Vocabulary.from_codes(["crack", "crack"]), r"repeated: crack"),
        (lambda: Vocabulary.from_codes(["crack", "pit"], names={"crack": "pit"}), r"type names .*repeated: pit"),
        (lambda: Vocabulary.from_codes(["crack"], colours={"dent": [0, 0, 0]}), r"data.type_colours names dent"),
        (lambda: Vocabulary.from_codes(["crack"], names={"rust": "Rust"}), r"data.type_names names rust"),
        (lambda: Vocabulary.from_codes(["crack"], colours={"crack": [0, 0, 256]}), r"data.type_colours.crack="),
        (lambda: Vocabulary.from_codes(["crack"], colours={"crack": "red"}), r"expected \[r, g, b\]"),
        (lambda: Vocabulary.from_config([{"code": "crack", "name": "crack"}]), r"data.vocabulary\[0\]"),
        (lambda: Vocabulary.from_config({"code": "crack"}), r"expected a list of"),
        (lambda: Vocabulary((DefectType("a", "a", (1, 2, 3)), DefectType("b", "a", (1, 2, 4)))), r"repeated: a"),
    ],
)
def test_a_bad_vocabulary_is_a_config_error_naming_the_key(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_the_palette_stays_distinguishable_and_is_deterministic_by_position():
    """Real-IAD's 8 colours first, then 12 more: at least 20 distinct, any two at least 30 apart in CIE76 Delta E and
    50 in RGB, none too dark for the black-to-colour heatmap colormap; 12 new types take the first 12 colours."""
    assert PALETTE[:8] == tuple(t.colour for t in DEFECT_TYPES) and len(set(PALETTE)) == len(PALETTE) >= 20
    for a, b in itertools.combinations(PALETTE, 2):
        assert math.dist(_lab(a), _lab(b)) >= 30 and math.dist(a, b) >= 50, (a, b)
    assert all(max(colour) >= 190 for colour in PALETTE)
    twelve = Vocabulary.from_codes(TWELVE_TYPES)
    assert twelve.colours == PALETTE[:12] == Vocabulary.from_codes(TWELVE_TYPES).colours
    assert twelve.names == TWELVE_TYPES
    many = Vocabulary.from_codes([f"t{k}" for k in range(40)])  # past the palette: still one colour each
    assert len(set(many.colours)) == 40 and many.colours[25] == palette_colour(25)


def test_new_types_take_palette_colours_no_other_type_has():
    """An override or a Real-IAD code holds its colour; the other types take the next free palette colours."""
    assert Vocabulary.from_codes(TYPES).colours == PALETTE[:3]
    overridden = Vocabulary.from_codes(TYPES, colours={"crack": list(PALETTE[1])})
    assert overridden.colours == (PALETTE[1], PALETTE[0], PALETTE[2])
    mixed = Vocabulary.from_codes(["crack", "AK"])  # AK keeps Real-IAD's red: crack does not take it
    assert mixed.colours == (PALETTE[1], PALETTE[0])


def test_real_iad_stays_the_default(tmp_path):
    assert REALIAD_VOCABULARY.codes == ("AK", "BX", "CH", "HS", "PS", "QS", "YW", "ZW")
    assert Vocabulary.from_codes(REALIAD_VOCABULARY.codes) == REALIAD_VOCABULARY
    subset = Vocabulary.from_codes(["HS", "AK"])
    assert subset.names == ("scratch", "pit") and subset.colours == (DEFECT_TYPES[3].colour, DEFECT_TYPES[0].colour)
    assert RealIADDataModule(tmp_path, alpha=0.2).vocabulary == REALIAD_VOCABULARY
    assert RealIADDataModule(tmp_path, alpha=0.2, defect_codes=["HS", "AK"]).vocabulary == subset
    cfg = compose_config(tmp_path, ["data=synthetic"])
    assert vocabulary_of(cfg) == REALIAD_VOCABULARY and type_names(cfg) == list(REALIAD_VOCABULARY.names)
    assert type_colours(cfg) == list(REALIAD_VOCABULARY.colours)
    recoloured = compose_config(tmp_path, ["data=synthetic", "data.type_colours={HS: [0, 0, 0]}"])
    assert vocabulary_of(recoloured).colour("scratch") == (0, 0, 0)
    assert RealIADDataModule(tmp_path, alpha=0.2, type_colours={"HS": [0, 0, 0]}).vocabulary.colour("HS") == (0, 0, 0)
    single = compose_config(tmp_path, ["mode=single"])
    assert type_names(single) == ["anomaly"] and type_colours(single) == [ANY_DEFECT_COLOUR]


def test_vocabulary_of_prefers_the_written_vocabulary_then_the_codes():
    written = Vocabulary.from_codes(TYPES).to_config()
    assert vocabulary_of({"data": {"vocabulary": written, "defect_codes": ["AK"]}}).codes == TYPES
    assert vocabulary_of({"data": {"defect_codes": ["QS"]}}).names == ("missing_parts",)
    assert vocabulary_of({"data": {}}) == REALIAD_VOCABULARY


# ---------------------------------------------------------------------------------------------------- the sampler


@pytest.mark.parametrize("types", [TYPES, TWELVE_TYPES])
def test_sampler_classes_are_the_types_then_normal(types):
    """M types: classes 0..M-1 and normal = M (12 types: normal is 12, type 8 stays type 8)."""
    m = len(types)
    records = [SimpleNamespace(type_index=k) for k in (-1, *range(m), -1)]
    assert sampler_classes(records, "types", m) == [m, *range(m), m]
    assert sampler_classes(records, "binary", m) == [1, *[0] * m, 1]
    assert num_sampler_classes("types", m) == m + 1 and num_sampler_classes("binary", m) == 2


# ---------------------------------------------------------------------------------------------------- end to end


def _folder(root: Path, *extra: str) -> list[str]:
    return ["data=folder", f"data.root={root}", *FAST, *extra]


def _balanced_epoch(datamodule) -> tuple[int, ...]:
    """The class counts of the coupon-collector epoch the callback computes for ``datamodule``."""
    callback = BalancedEpochLength()
    callback.setup(SimpleNamespace(datamodule=datamodule, loggers=[]), None, "fit")
    return callback.result.counts


def test_twelve_types_set_up_name_count_and_colour_twelve_channels(tmp_path):
    root = make_types_tree(tmp_path / "many", types=TWELVE_TYPES, per_type=4, masks=False)
    cfg = compose_config(tmp_path, _folder(root))
    datamodule = build_datamodule(cfg)
    assert datamodule.vocabulary.codes == TWELVE_TYPES and datamodule.num_types == 12
    counts = datamodule.train_class_counts()
    records = datamodule.train_dataset.records
    assert len(counts) == 13 and counts[12] == sum(r.type_index < 0 for r in records) > 0
    assert counts[:12] == [sum(r.type_index == k for r in records) for k in range(12)]
    assert _balanced_epoch(datamodule) == tuple(c for c in counts if c)
    with open_dict(cfg):  # as train writes it
        cfg.data[VOCABULARY_KEY] = datamodule.vocabulary.to_config()
    module = build_module(cfg)
    assert module.pipeline.num_types == 12 and module.type_names == list(TWELVE_TYPES)
    assert module.type_colours == list(PALETTE[:12])
    metadata = export_metadata(module.pipeline, cfg, "uint8", (64, 64), "fp32", None)
    assert json.loads(metadata["type_names"]) == list(TWELVE_TYPES)
    assert json.loads(metadata["type_colours"]) == [list(c) for c in PALETTE[:12]]


@pytest.fixture(scope="module")
def three_type_run(tmp_path_factory):
    """A short training on a 3-type folder (crack, dent, rust; rust recoloured): (config, objects)."""
    from mtfcdd.train import train

    tmp = tmp_path_factory.mktemp("three")
    root = make_types_tree(tmp / "parts", per_type=6)
    cfg = compose_config(tmp / "train", _folder(root, f"data.type_colours={{rust: {RUST}}}", "test_ckpt=last"))
    _, objects = train(cfg)
    return cfg, objects, root


def test_a_three_type_run_follows_its_vocabulary(three_type_run):
    cfg, objects, _ = three_type_run
    datamodule, model = objects["datamodule"], objects["model"]
    expected_colours = [PALETTE[0], PALETTE[1], tuple(RUST)]
    assert model.type_names == list(TYPES) and model.type_colours == expected_colours
    counts = datamodule.train_class_counts()
    assert len(counts) == 4 and counts[3] == sum(r.type_index < 0 for r in datamodule.train_dataset.records)
    (epoch,) = [c for c in objects["trainer"].callbacks if isinstance(c, BalancedEpochLength)]
    assert epoch.result.counts == tuple(counts) and epoch.result.classes == 4
    run = Path(cfg.paths.output_dir)
    results = json.loads((run / "results.json").read_text())
    assert list(results["types"]) == list(TYPES) and results["type_names"] == list(TYPES)
    assert results["type_colours"] == {"crack": list(PALETTE[0]), "dent": list(PALETTE[1]), "rust": RUST}
    assert (run / "heatmaps" / "test.png").is_file()
    # the checkpoint carries the vocabulary: no data config needed to name and colour the channels
    pipeline, saved = load_pipeline(run / "checkpoints" / "last.ckpt")
    assert saved.data[VOCABULARY_KEY] == Vocabulary.from_codes(TYPES, colours={"rust": RUST}).to_config()
    assert pipeline.num_types == 3 and type_names(saved) == list(TYPES) and type_colours(saved) == expected_colours


def test_predict_and_export_of_a_three_type_checkpoint_name_its_types(three_type_run, tmp_path):
    from mtfcdd.predict import predict

    cfg, _, root = three_type_run
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    options = [f"ckpt_path={ckpt}", f"input={root / 'rust'}", "num_workers=0", "trainer=cpu", "save_overlays=false"]
    predicted = compose_config(tmp_path / "predict", options, config_name="predict")
    summary = predict(predicted)
    assert list(summary["per_type"]) == list(TYPES)
    with open(Path(predicted.paths.output_dir) / "predictions.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert [f"score_{name}" for name in TYPES] == [c for c in header if c.startswith("score_")]
    output = tmp_path / "model.onnx"
    export(compose_config(tmp_path / "export", [f"ckpt_path={ckpt}", f"output={output}"], config_name="export"))
    meta = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert json.loads(meta["type_names"]) == list(TYPES)
    assert json.loads(meta["type_colours"]) == [list(PALETTE[0]), list(PALETTE[1]), RUST]


@pytest.mark.parametrize(("mode", "expected"), [("multi", "rust"), ("single", "anomaly")])
def test_test_stage_predictions_name_the_true_type_from_the_data_vocabulary(tmp_path, mode, expected):
    """type_index 2 of a [crack, dent, rust] data module is a rust (a 1-type model in mode multi names it too)."""
    vocabulary = Vocabulary.from_codes(TYPES)
    trainer = SimpleNamespace(
        global_rank=0, world_size=1, default_root_dir=str(tmp_path), datamodule=SimpleNamespace(vocabulary=vocabulary)
    )
    names = vocabulary.channel_names(mode)
    module = SimpleNamespace(type_names=names, type_colours=vocabulary.channel_colours(mode), mode=mode)
    writer = PredictionWriter(save_overlays=False)
    writer._start(trainer, module, "test")
    try:
        assert writer._true_type(2) == expected and writer._true_type(-1) == "normal"
        assert writer.columns[-1] == "true_type" and f"score_{names[0]}" in writer.columns
    finally:
        writer._abort()
    one = Vocabulary.from_codes(["crack"])
    trainer.datamodule.vocabulary = one
    writer._start(trainer, SimpleNamespace(type_names=["crack"], type_colours=one.colours, mode="multi"), "test")
    try:
        assert writer._true_type(0) == "crack"
    finally:
        writer._abort()


def test_the_sweep_report_colours_each_type_as_its_job_did(tmp_path):
    """From a job's results.json ``type_colours``, else its saved config's vocabulary, else the palette."""
    realiad = OmegaConf.create({"data": {"defect_codes": ["HS"]}})
    recorded = {"mode": "multi", "types": {"crack": {}}, "type_colours": {"crack": RUST}}
    jobs = [
        Job(path=tmp_path, name="a", config=OmegaConf.create({}), state="finished", results=recorded),
        Job(path=tmp_path, name="b", config=realiad, state="finished", results={"mode": "multi", "types": {}}),
        Job(path=tmp_path, name="c", config=realiad, state="failed", results=None),
    ]
    colours = report_colours(jobs, ["crack", "scratch", "dent"])
    assert colours == {"crack": tuple(RUST), "scratch": DEFECT_TYPES[3].colour, "dent": palette_colour(2)}


def test_evaluate_names_the_channels_from_the_checkpoint_and_refuses_other_types(three_type_run, tmp_path):
    from mtfcdd.evaluate import check_same_types, evaluation_config

    cfg, _, _ = three_type_run
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    evaluation = compose_config(tmp_path, [f"ckpt_path={ckpt}", "trainer=cpu", "logger=none"], config_name="evaluate")
    _, trained = load_pipeline(ckpt)
    merged = evaluation_config(evaluation, trained)
    assert type_names(merged) == list(TYPES) and type_colours(merged)[2] == tuple(RUST)
    check_same_types(TYPES, vocabulary_of(merged).codes, "multi")
    with pytest.raises(ConfigError, match=r"defect types \(AK, BX.*\) are not the checkpoint's channels \(crack"):
        check_same_types(REALIAD_VOCABULARY.codes, vocabulary_of(merged).codes, "multi")
    check_same_types(REALIAD_VOCABULARY.codes, vocabulary_of(merged).codes, "single")  # one any-defect channel
