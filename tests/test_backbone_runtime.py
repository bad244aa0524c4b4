"""The frozen backbone run by ONNX Runtime / OpenVINO while fitting: same features, same training, torch elsewhere."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from helpers.hydra_compose import compose_config
from helpers.overrides import tiny_data
from mtfcdd.callbacks.backbone_switch import BackboneRuntimeSwitch
from mtfcdd.core.config import ConfigError
from mtfcdd.inference.backbone_runtime import BackboneRuntime, resolve_backbone_runtime
from mtfcdd.model.build import build_module
from mtfcdd.model.components.backbones import FrozenBackbone
from mtfcdd.run.build import build_datamodule


@pytest.fixture(scope="module")
def backbone() -> FrozenBackbone:
    torch.manual_seed(0)
    return FrozenBackbone("tf_efficientnet_lite0", out_index=3, output_stride=8, pretrained=False)


def check_features(runtime: str) -> None:
    """The runtime's features equal torch's for two input sizes and both memory formats, one model per size."""
    torch.manual_seed(0)
    backbone = FrozenBackbone("tf_efficientnet_lite0", out_index=3, output_stride=8, pretrained=False)
    run = BackboneRuntime(backbone, runtime, threads=2)
    for size, batch in ((64, 3), (96, 2), (64, 5)):
        images = torch.randn(batch, 3, size, size)
        with torch.no_grad():
            expected = backbone(images)
        got = run(images.contiguous(memory_format=torch.channels_last))
        assert got.dtype == torch.float32 and got.shape == expected.shape
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert run(images).is_contiguous()
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert sorted(run._runners) == [(64, 64), (96, 96)]  # one model per input size, any batch


def test_onnxruntime_features_equal_torch():
    check_features("onnxruntime")


def test_openvino_features_equal_torch_in_a_process_of_its_own():
    """In its own process: after an OpenVINO model ran in the pytest process, the SLURM requeue test (Lightning's
    SIGUSR1 handler) crashed with SIGSEGV later in the same process (docs/train-realiad.md: "Faster fitting on a
    CPU")."""
    code = "import test_backbone_runtime as t; t.check_features('openvino'); print('features equal')"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0 and "features equal" in proc.stdout, proc.stderr[-3000:]


def test_a_copy_or_pickle_holds_no_session_and_builds_its_own(backbone):
    run = BackboneRuntime(backbone, "onnxruntime", threads=1)
    images = torch.randn(2, 3, 64, 64)
    first = run(images)
    for other in (copy.deepcopy(run), pickle.loads(pickle.dumps(run))):
        assert other._runners == {}
        torch.testing.assert_close(other(images), first)


def test_choices_resolve_per_device_and_typos_fail_naming_the_key():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backbone_runtime("auto", cpu) == "onnxruntime"
    assert resolve_backbone_runtime("openvino", cpu) == "openvino"  # a test extra
    assert resolve_backbone_runtime("auto", cuda) == "torch"
    assert resolve_backbone_runtime("onnxruntime", cpu) == "onnxruntime"
    with pytest.raises(ConfigError, match="callbacks.backbone_runtime.runtime='onnx'"):
        BackboneRuntimeSwitch("onnx")
    with pytest.raises(ConfigError, match="CPU only"):
        resolve_backbone_runtime("onnxruntime", cuda)


class _Probe(L.Callback):
    """Records what computes the features at each training and validation batch."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(pl_module.net.feature_runtime)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.seen.append(pl_module.net.feature_runtime)


def _fit(tmp_path, tiny_realiad, runtime: str) -> tuple[dict[str, torch.Tensor], list[object], object]:
    cfg = compose_config(
        tmp_path / runtime, [*tiny_data(tiny_realiad), "debug=limit", "logger=none", "data.num_workers=0"]
    )
    L.seed_everything(0, workers=True)
    datamodule, module, probe = build_datamodule(cfg), build_module(cfg), _Probe()
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=False,
        enable_checkpointing=False,
        callbacks=[BackboneRuntimeSwitch(runtime), probe],
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule)
    return {k: v.clone() for k, v in module.net.head.state_dict().items()}, probe.seen, module.net.feature_runtime


def test_fitting_with_a_runtime_trains_the_head_torch_trains_and_hands_torch_back(tmp_path, tiny_realiad):
    reference, seen_torch, _ = _fit(tmp_path, tiny_realiad, "torch")
    head, seen, after = _fit(tmp_path, tiny_realiad, "onnxruntime")
    assert seen_torch and all(runtime is None for runtime in seen_torch)
    assert seen and all(isinstance(runtime, BackboneRuntime) and runtime.runtime == "onnxruntime" for runtime in seen)
    assert after is None  # test, checkpoints and engines run the torch backbone again
    for name, value in reference.items():
        torch.testing.assert_close(head[name], value, rtol=1e-3, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
