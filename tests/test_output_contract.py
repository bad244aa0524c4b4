"""The pipeline's output contract (mtfcdd/model/outputs.py) and every consumer of it: the pipeline itself, the ONNX
graph's outputs, the export's metadata, the prediction records and files, the docs' tables."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
import torch

from helpers.hydra_compose import compose_config
from mtfcdd.callbacks.predictions import PredictionWriter
from mtfcdd.export import export_metadata
from mtfcdd.inference.onnx_pipeline import OUTPUT_NAMES as ONNX_OUTPUT_NAMES
from mtfcdd.inference.onnx_pipeline import pipeline_to_onnx
from mtfcdd.model.build import build_pipeline
from mtfcdd.model.outputs import (
    DIMS,
    OUTPUT_NAMES,
    OUTPUTS,
    PipelineOutput,
    image_records,
    output_descriptions,
    record_columns,
)

SIZE = 64
DOCS = Path(__file__).resolve().parents[1] / "docs"
FIELDS = PipelineOutput._fields
DTYPES = {"float32": torch.float32, "bool": torch.bool, "int64": torch.int64}


def _pipeline(tmp_path: Path, mode: str):
    cfg = compose_config(
        tmp_path,
        [
            "data=synthetic",
            f"data.image_size={SIZE}",
            f"mode={mode}",
            "model/backbone=efficientnet_lite0",
            "model.backbone.pretrained=false",
            "model.head_width=8",
        ],
    )
    torch.manual_seed(0)
    return build_pipeline(cfg).eval(), cfg


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(pipeline, cfg, type names, its outputs for 3 images): calibrated so that decisions and types vary."""
    pipeline, cfg = _pipeline(tmp_path_factory.mktemp("contract"), "multi")
    images = torch.randint(0, 256, (3, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scores = pipeline(images).scores
        median = scores.median(dim=0).values
        pipeline.set_calibration(scores.amin(dim=0), scores.amax(dim=0) + 1.0, median)  # some decided, some not
        pipeline.set_any_defect(torch.ones(pipeline.num_types), float(scores.amax(dim=1).median()))
        out = pipeline(images)
    names = [f"type {k}" for k in range(pipeline.num_types)]  # with spaces: column names use underscores
    return pipeline, cfg, names, out


def test_every_field_has_a_complete_contract():
    assert tuple(OUTPUTS) == FIELDS == OUTPUT_NAMES
    for name, spec in OUTPUTS.items():
        assert spec.dtype in DTYPES and spec.dims and set(spec.dims) <= set(DIMS), name
        assert spec.dims[0] == "B" and spec.meaning, name
        if spec.column is not None:  # a per-type output has one column per type, the others one column
            assert ("{type}" in spec.column) == ("M" in spec.dims), name


def test_the_pipeline_gives_what_the_contract_says(small):
    pipeline, _, _, out = small
    sizes = {"B": 3, "M": pipeline.num_types, "H": SIZE, "W": SIZE, "h": out.maps.shape[2], "w": out.maps.shape[3]}
    assert sizes["h"] < SIZE  # feature resolution: h and w are not H and W
    for name, spec in OUTPUTS.items():
        value = getattr(out, name)
        assert value.dtype == DTYPES[spec.dtype], name
        assert tuple(value.shape) == tuple(sizes[d] for d in spec.dims), name


def test_the_onnx_graph_outputs_every_field_with_its_dimensions(small):
    pipeline, _, _, _ = small
    graph = onnx.load_from_string(pipeline_to_onnx(pipeline, "uint8", (SIZE, SIZE))).graph
    assert ONNX_OUTPUT_NAMES == FIELDS
    assert [output.name for output in graph.output] == list(FIELDS)
    for output in graph.output:
        dims = output.type.tensor_type.shape.dim
        spec = OUTPUTS[output.name]
        assert len(dims) == len(spec.dims), output.name
        for dim, symbol in zip(dims, spec.dims):  # every dimension but M is dynamic, named as in DIMS (ONNX's shape
            if symbol != "M":  # inference leaves M a number or a symbol of its own)
                assert dim.dim_param == DIMS[symbol], (output.name, symbol)
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == pipeline.num_types  # maps: M static


def test_the_export_metadata_describes_every_field(small, tmp_path):
    pipeline, cfg, _, _ = small
    plain = json.loads(export_metadata(pipeline, cfg, "uint8", (SIZE, SIZE), "fp32", None)["outputs"])
    assert list(plain) == list(FIELDS)
    assert all(plain[name].startswith(f"{OUTPUTS[name].shape}: ") for name in FIELDS)
    detector, _ = _pipeline(tmp_path, "single")
    combined, _ = _pipeline(tmp_path, "multi")
    combined.set_detector(detector, SIZE)
    described = json.loads(export_metadata(combined, cfg, "uint8", (SIZE, SIZE), "fp32", None)["outputs"])
    assert described == output_descriptions(detector=True) and list(described) == list(FIELDS)
    changed = {name for name in FIELDS if described[name] != plain[name]}
    assert (
        changed
        == {name for name, spec in OUTPUTS.items() if spec.detector}
        == {"anomaly_map", "anomaly_score", "anomalous"}
    )
    assert all("detector" in described[name] for name in changed)


def test_a_record_holds_every_field_that_has_a_column(small):
    _, _, names, out = small
    paths = ["a.png", "b.png", "c.png"]
    records = image_records(out, names, paths)
    columns = record_columns(names)
    assert columns == [
        "path",
        *(f"score_type_{k}" for k in range(len(names))),
        *(f"decision_type_{k}" for k in range(len(names))),
        "anomaly_score",
        "anomalous",
        "predicted_type",
    ]
    in_record = {name for name, spec in OUTPUTS.items() if spec.column}
    assert in_record == {"scores", "decisions", "anomaly_score", "anomalous", "predicted_type"}
    for j, record in enumerate(records):
        assert list(record) == columns and record["path"] == paths[j]
        assert [record[f"score_type_{k}"] for k in range(len(names))] == out.scores[j].double().tolist()
        assert [record[f"decision_type_{k}"] for k in range(len(names))] == out.decisions[j].int().tolist()
        assert record["anomaly_score"] == float(out.anomaly_score[j])
        assert record["anomalous"] == int(out.anomalous[j]) and record["anomalous"] in (0, 1)
        assert record["predicted_type"] == names[int(out.predicted_type[j])]
        json.dumps(record)  # JSON-ready as it is (what a server answers)
    assert 0 < sum(sum(r[f"decision_type_{k}"] for k in range(len(names))) for r in records) < 3 * len(names)
    with pytest.raises(ValueError, match="2 paths"):
        image_records(out, names, paths[:2])


def test_the_prediction_writer_writes_the_records(small, tmp_path):
    pipeline, _, names, out = small
    writer = PredictionWriter(save_overlays=False, stages=("predict",))
    trainer = SimpleNamespace(global_rank=0, world_size=1, default_root_dir=str(tmp_path))
    module = SimpleNamespace(type_names=names, type_colours=[(255, 60, 60)] * len(names))
    writer._start(trainer, module, "predict")
    batch = {"path": ["a.png", "bad.png", "c.png", "d.png"], "error": ["", "cannot decode", "", ""]}
    shown = PipelineOutput(*(torch.cat([part[:1], part]) for part in out))  # row 1: the unreadable file's
    writer._write(module, shown, batch, "predict")
    writer._finish()
    with (tmp_path / "predictions.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    lines = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    expected = image_records(out, names, ["a.png", "c.png", "d.png"])
    assert rows[0] == record_columns(names)
    assert lines == expected
    assert rows[1:] == [[str(record[c]) for c in rows[0]] for record in expected]
    assert writer.summary["anomalous"] == sum(r["anomalous"] for r in expected)
    assert writer.summary["per_type"] == {n: sum(r[f"decision_{n.replace(' ', '_')}"] for r in expected) for n in names}


def _docs_table(page: str, header: str) -> list[list[str]]:
    """The rows (cells, stripped) of the table of ``docs/<page>`` whose header line is ``header``."""
    lines = [line.strip() for line in (DOCS / page).read_text(encoding="utf-8").splitlines()]
    start = lines.index(header)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_docs_tables_list_exactly_the_contract():
    outputs = _docs_table("deployment.md", "| output | dtype [dims] | meaning |")
    assert [re.fullmatch(r"`(\w+)`", row[0]).group(1) for row in outputs] == list(FIELDS)
    assert [row[1] for row in outputs] == [OUTPUTS[name].shape for name in FIELDS]
    columns = _docs_table("predict.md", "| column | meaning |")
    assert [row[0].strip("`") for row in columns] == record_columns(["<type>"])
