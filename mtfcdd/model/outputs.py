"""The pipeline's output contract, defined once: every output (name, dtype, dimensions, meaning, the meaning with a
detector) and the per-image record (the columns of ``predictions.csv``/``.jsonl``, the JSON a server answers).

Adding an output is one edit here: a field of ``PipelineOutput`` with its ``Output`` (and, in
``InferencePipeline``, the step that computes it). The ONNX output names and dynamic axes
(``mtfcdd.inference.onnx_pipeline``), the export's ``outputs`` metadata (``output_descriptions``) and the
prediction files (``mtfcdd.callbacks.predictions``, through ``record_columns`` and ``image_records``)
read it; ``tests/test_output_contract.py`` checks that each of them, and the docs' tables, cover every field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple, get_type_hints

import torch

DIMS = {"B": "batch", "M": "types", "H": "height", "W": "width", "h": "map_height", "w": "map_width"}
"""Dimension symbols: B images, M heatmap channels (defect types), H x W the input size, h x w the feature
resolution; every one but M is a dynamic axis of the exported graph (named as here)."""


@dataclass(frozen=True)
class Output:
    """One output of the pipeline.

    dtype, dims: ``float32``, ``bool`` or ``int64`` (a type index), and its dimensions (symbols of ``DIMS``).
    meaning: what it holds; ``detector``: what it holds with a detector attached (None: the same).
    column: its column in the per-image record (``{type}``: one column per type, for a per-type output [B, M]);
    None: not in the record. Record values: float32 -> a number, bool -> 0/1, int64 -> the type's name.
    """

    dtype: str
    dims: tuple[str, ...]
    meaning: str
    detector: str | None = None
    column: str | None = None

    @property
    def shape(self) -> str:
        """``dtype [dims]``, e.g. ``float32 [B, M, H, W]``."""
        return f"{self.dtype} [{', '.join(self.dims)}]"


class PipelineOutput(NamedTuple):
    """Everything the pipeline gives for a batch of B raw images (see ``Output`` and ``DIMS``)."""

    maps: Annotated[
        torch.Tensor,
        Output(
            "float32", ("B", "M", "h", "w"), "A_k, the pseudo-Huber maps at feature resolution (means: Eq. 2's scores)"
        ),
    ]
    heatmaps: Annotated[
        torch.Tensor, Output("float32", ("B", "M", "H", "W"), "A'_k, the maps upsampled to the input size")
    ]
    calibrated: Annotated[
        torch.Tensor,
        Output("float32", ("B", "M", "H", "W"), "A'_k normalised per type with heat_min/heat_max, clamped to [0, 1]"),
    ]
    scores: Annotated[
        torch.Tensor,
        Output(
            "float32",
            ("B", "M"),
            "the image score per type, image_score (max or mean) of its heatmap",
            column="score_{type}",
        ),
    ]
    decisions: Annotated[
        torch.Tensor,
        Output(
            "bool",
            ("B", "M"),
            "scores >= image_threshold (all false where no threshold was calibrated)",
            column="decision_{type}",
        ),
    ]
    anomaly_map: Annotated[
        torch.Tensor,
        Output(
            "float32",
            ("B", "H", "W"),
            "the any-defect map, max over the heatmap channels divided by anomaly_scale",
            detector="the any-defect map, the detector's heatmap",
        ),
    ]
    anomaly_score: Annotated[
        torch.Tensor,
        Output(
            "float32",
            ("B",),
            "the any-defect image score, max over the type scores divided by anomaly_scale",
            detector="the any-defect image score, the detector's image score",
            column="anomaly_score",
        ),
    ]
    anomalous: Annotated[
        torch.Tensor,
        Output(
            "bool",
            ("B",),
            "anomaly_score >= anomaly_threshold (all false where none was calibrated)",
            detector="anomaly_score >= anomaly_threshold (the detector's calibrated threshold)",
            column="anomalous",
        ),
    ]
    predicted_type: Annotated[
        torch.Tensor,
        Output(
            "int64",
            ("B",),
            "index into type_names of the most likely defect type (read it where anomalous)",
            column="predicted_type",
        ),
    ]


OUTPUTS: dict[str, Output] = {
    name: hint.__metadata__[0] for name, hint in get_type_hints(PipelineOutput, include_extras=True).items()
}
"""Output name -> its ``Output``, in the order of ``PipelineOutput``'s fields."""
OUTPUT_NAMES: tuple[str, ...] = PipelineOutput._fields
"""The outputs by name, in order (the exported graph's output names)."""


def output_descriptions(detector: bool = False) -> dict[str, str]:
    """Output name -> ``"<dtype> [<dims>]: <meaning>"`` (the export's ``outputs`` metadata); ``detector``: the
    meanings of a pipeline with a detector attached."""
    return {
        name: f"{spec.shape}: {spec.detector if detector and spec.detector else spec.meaning}"
        for name, spec in OUTPUTS.items()
    }


def column_name(type_name: str) -> str:
    """A type name as it appears in column names (``missing parts`` -> ``missing_parts``)."""
    return type_name.replace(" ", "_")


def _columns(spec: Output, type_names: Sequence[str]) -> list[str]:
    if "M" in spec.dims:
        return [spec.column.format(type=column_name(name)) for name in type_names]
    return [spec.column]


def record_columns(type_names: Sequence[str]) -> list[str]:
    """The per-image record's columns: ``path``, then the columns of every output that has one, in output order."""
    return ["path", *(c for spec in OUTPUTS.values() if spec.column for c in _columns(spec, type_names))]


def image_records(outputs: PipelineOutput, type_names: Sequence[str], paths: Sequence[str]) -> list[dict[str, Any]]:
    """One record per image of ``outputs`` (a batch of B; ``paths``: B names), keyed by ``record_columns``:
    JSON-ready values (numbers, 0/1, type names). A server answering one image returns ``image_records(...)[0]``."""
    if len(paths) != len(outputs.scores) or len(type_names) != outputs.scores.shape[1]:
        raise ValueError(
            f"{len(paths)} paths and {len(type_names)} type names for outputs of "
            f"{tuple(outputs.scores.shape)} images x types"
        )
    records: list[dict[str, Any]] = [{"path": path} for path in paths]
    for name, spec in OUTPUTS.items():
        if spec.column is None:
            continue
        values = getattr(outputs, name).detach().cpu()
        if spec.dtype == "int64":
            values = [type_names[int(index)] for index in values.flatten()]
        else:
            values = (values.double() if spec.dtype == "float32" else values.int()).flatten().tolist()
        columns = _columns(spec, type_names)
        for j, record in enumerate(records):
            record.update(zip(columns, values[j * len(columns) : (j + 1) * len(columns)]))
    return records
