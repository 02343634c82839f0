"""The backbone: offline ImageNet weights, named taps, and the inference fast path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from conftest import assert_features_agree
from lookalike.backbones import BACKBONES, build_backbone
from lookalike.backbones.efficientnet import optimize_for_inference
from lookalike.settings import BACKBONE_NAMES, FeatureSettings


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_backbone("efficientnet_lite0", ["s16", "head"])


def test_weights_load_offline_and_classify_a_cat(model: torch.nn.Module) -> None:
    x = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float()
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    net = model.net  # type: ignore[attr-defined]
    with torch.inference_mode():
        logits = net((x - 127.0) / 128.0)
    # ImageNet classes 281-285 are domestic cats
    assert int(logits.argmax()) in range(281, 286)


@pytest.mark.parametrize("size", [(224, 224), (283, 400), (399, 565)])
def test_fast_path_equals_the_network(model: torch.nn.Module, size: tuple[int, int]) -> None:
    """Folded batch norms and in-convolution padding change nothing but float rounding."""
    fast = optimize_for_inference(model)  # type: ignore[arg-type]
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)) * 255
    with torch.inference_mode():
        slow_maps, fast_maps = model(x), fast(x)
    for name in ("s16", "head"):
        assert fast_maps[name].shape == slow_maps[name].shape
        scale = float(slow_maps[name].abs().max())
        np.testing.assert_allclose(
            fast_maps[name].numpy(), slow_maps[name].numpy(), atol=1e-4 * scale
        )


def test_unknown_names_list_the_allowed() -> None:
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        build_backbone("resnet", ["s16"])
    with pytest.raises(ValueError, match="s16"):
        build_backbone("efficientnet_lite0", ["nope"])
    assert set(BACKBONES) == set(BACKBONE_NAMES)
    with pytest.raises(ValueError, match="allowed: efficientnet_lite0, efficientnet_lite1"):
        FeatureSettings(backbone="resnet50")


def test_bfloat16_features_agree_with_float32() -> None:
    """The network in bfloat16 (the default where the processor has it natively) gives the
    same strongest locations and nearly the same descriptors as in float32."""
    from lookalike.features import Extractor

    settings = FeatureSettings(image_size=256, max_features=200)
    image = data.astronaut()
    exact = Extractor(settings, precision="float32").extract(image)
    half = Extractor(settings, precision="bfloat16").extract(image)
    assert half.local.desc.dtype == np.float32
    assert_features_agree(exact, half)


def test_precision_comes_from_the_environment_and_unknown_names_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lookalike.features.extract import use_bfloat16

    monkeypatch.setenv("LOOKALIKE_PRECISION", "bfloat16")
    assert use_bfloat16()
    assert not use_bfloat16("float32")
    monkeypatch.setenv("LOOKALIKE_PRECISION", "float8")
    with pytest.raises(ValueError, match="allowed: auto, float32, bfloat16"):
        use_bfloat16()


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_backbones_load_offline_and_give_features_of_their_channels(name: str) -> None:
    """Lite1 and Lite2 come with their ImageNet weights (no download): they know a cat, and
    the extractor reads local and global descriptors of their layers' widths off them."""
    from lookalike.features import Extractor

    model = build_backbone(name, ["s16", "head"])
    x = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float()
    x = torch.nn.functional.interpolate(x, size=(260, 260), mode="bilinear", antialias=True)
    with torch.inference_mode():
        logits = model.net((x - 127.0) / 128.0)  # type: ignore[operator]
    assert int(logits.argmax()) in range(281, 286)
    channels = model.channels  # type: ignore[attr-defined]
    settings = FeatureSettings(backbone=name, image_size=256, max_features=100)
    assert settings.key.startswith(name.removeprefix("efficientnet_") + "-")
    image = data.astronaut()
    features = Extractor(settings, precision="float32").extract(image)
    local = features.local
    assert local.desc.shape == (100, channels["s16"])
    assert features.global_.shape == (channels["head"],)
    assert np.isfinite(local.desc).all() and np.isfinite(features.global_).all()
    # positions in the pixels of the image as given
    height, width = image.shape[:2]
    assert (local.xy >= 0).all()
    assert (local.xy[:, 0] < width).all() and (local.xy[:, 1] < height).all()
