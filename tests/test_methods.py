"""Method names an evaluation accepts."""

from __future__ import annotations

import pytest

from lookalike.evaluate.methods import Method, parse_method
from lookalike.settings import CLASSIC_DESCRIPTORS


def test_methods_are_modes_fusions_and_peers() -> None:
    assert parse_method("asmk") == Method("asmk", "asmk")
    assert parse_method("colour") == Method("colour", "colour")
    assert parse_method("fused+classic") == Method("fused+classic", "fused", CLASSIC_DESCRIPTORS)
    assert parse_method("global+shape+colour").fuse == ("shape", "colour")
    assert parse_method("fused+rootsift").fuse == ("rootsift",)
    assert parse_method("phash") == Method("phash", "phash", peer=True)
    assert parse_method("gem").peer


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sift", "unknown method 'sift'"),
        ("fused+sift", "cannot fuse 'sift'"),
        ("colour+texture", "fused into a CNN mode only"),
        ("phash+colour", "unknown method"),
    ],
)
def test_unknown_methods_are_explained(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_method(name)
