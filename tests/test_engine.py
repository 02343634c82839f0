"""The extraction engine (`features.engine`): OpenVINO's compilation of the network gives the
PyTorch module's maps, at any input size, from any thread; converted once and kept; chosen by
name or by `$LOOKALIKE_ENGINE`."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from conftest import assert_features_agree
from lookalike.backbones import build_backbone
from lookalike.features import engine
from lookalike.features.engine import OpenVinoNetwork, build_network, chosen_engine
from lookalike.features.extract import Extractor
from lookalike.settings import FeatureSettings


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_backbone("efficientnet_lite0", ["s16", "head"]).optimize_for_inference()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test converts into its own cache folder."""
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "openvino"


def _pixels(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 255


@pytest.mark.parametrize("size", [(32, 200), (283, 400), (425, 566)])
def test_float32_maps_are_the_modules_at_any_size(
    model: torch.nn.Module, size: tuple[int, int]
) -> None:
    network = OpenVinoNetwork(model, threads=1, bfloat16=False)
    x = _pixels(*size)
    with torch.inference_mode():
        expected = model(x)
    got = network(x)
    assert set(got) == set(expected) == {"s16", "head"}
    for name, maps in expected.items():
        assert got[name].shape == maps.shape and got[name].dtype == torch.float32
        scale = float(maps.abs().max())
        np.testing.assert_allclose(got[name].numpy(), maps.numpy(), atol=1e-4 * scale)


def test_bfloat16_features_agree_with_pytorchs() -> None:
    """What an index stores, read by each engine: the same strongest places and nearly the
    same descriptors (as bfloat16 and float32 agree within PyTorch)."""
    settings = FeatureSettings(image_size=256, max_features=200)
    image = data.astronaut()
    ours = Extractor(settings, precision="bfloat16", engine="openvino").extract(image)
    theirs = Extractor(settings, precision="bfloat16", engine="torch").extract(image)
    assert_features_agree(theirs, ours)


def test_converted_once_then_read_from_the_cache(
    model: torch.nn.Module, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = OpenVinoNetwork(model, threads=1, bfloat16=False)
    kept = sorted(p.suffix for p in cache.iterdir())
    assert kept == [".bin", ".xml"]  # whole: no temporary file left

    def no_conversion(*args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(engine, "_convert", no_conversion)
    again = OpenVinoNetwork(model, threads=1, bfloat16=False)
    x = _pixels(64, 96)
    np.testing.assert_array_equal(again(x)["s16"].numpy(), first(x)["s16"].numpy())
    # other weights are another network
    other = build_backbone("efficientnet_lite0", ["s16", "head"], pretrained=False)
    with pytest.raises(AssertionError, match="converted again"):
        OpenVinoNetwork(other.optimize_for_inference(), threads=1, bfloat16=False)


def test_a_damaged_cached_network_is_converted_again(model: torch.nn.Module, cache: Path) -> None:
    first = OpenVinoNetwork(model, threads=1, bfloat16=False)
    (weights,) = cache.glob("*.bin")
    weights.write_bytes(weights.read_bytes()[:1000])
    again = OpenVinoNetwork(model, threads=1, bfloat16=False)
    x = _pixels(64, 96)
    np.testing.assert_array_equal(again(x)["head"].numpy(), first(x)["head"].numpy())
    assert weights.stat().st_size > 1000  # written whole again


def test_a_cache_that_cannot_be_written_costs_only_the_conversion(
    model: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")
    monkeypatch.setenv("LOOKALIKE_CACHE", str(blocked))
    network = OpenVinoNetwork(model, threads=1, bfloat16=False)
    assert network(_pixels(64, 64))["head"].shape[1] == 1280


def test_threads_share_a_network(model: torch.nn.Module) -> None:
    network = OpenVinoNetwork(model, threads=1, bfloat16=False)
    inputs = [_pixels(96 + 16 * i, 128, seed=i) for i in range(4)]
    alone = [network(x)["s16"].numpy() for x in inputs]
    together: dict[int, np.ndarray] = {}

    def run(i: int) -> None:
        for _ in range(3):
            together[i] = network(inputs[i])["s16"].numpy()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        np.testing.assert_array_equal(together[i], alone[i])


def test_engines_are_chosen_by_name_or_environment(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOOKALIKE_ENGINE", raising=False)
    assert chosen_engine() == "openvino"  # installed with lookalike
    assert chosen_engine("torch") == "torch"
    monkeypatch.setenv("LOOKALIKE_ENGINE", "torch")
    assert chosen_engine() == "torch"
    assert Extractor(FeatureSettings()).engine == "torch"
    monkeypatch.setenv("LOOKALIKE_ENGINE", "tensorrt")
    with pytest.raises(ValueError, match="allowed: auto, torch, openvino"):
        chosen_engine()
    monkeypatch.setattr(engine, "_openvino_version", lambda: None)
    assert chosen_engine("auto") == "torch"
    with pytest.raises(ValueError, match="pip install openvino"):
        chosen_engine("openvino")
    assert build_network(model, engine="torch", threads=1, bfloat16=False) is model


def test_a_network_openvino_cannot_convert_runs_in_pytorch(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fails(*args: object) -> None:
        raise RuntimeError("unsupported operation")

    monkeypatch.setattr(engine, "_convert", fails)
    assert build_network(model, engine="openvino", threads=1, bfloat16=False) is model
    assert "unsupported operation" in caplog.text and "using PyTorch" in caplog.text


def test_threads_are_not_pinned_to_cores(model: torch.nn.Module) -> None:
    """Pinned, each extraction process's inference thread sat on the first core: two worker
    processes shared one core while the other idled (16 against 25 images/s on 2 cores)."""
    network = OpenVinoNetwork(model, threads=1, bfloat16=False)
    assert network.compiled.get_property("ENABLE_CPU_PINNING") is False
    assert network.compiled.get_property("INFERENCE_NUM_THREADS") == 1
