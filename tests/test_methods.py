"""Method names an evaluation accepts: the registry and the rule for composed names."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest

from lookalike.collection import Collection
from lookalike.evaluate.methods import METHODS, Method, parse_method
from lookalike.evaluate.robustness_run import METHODS as ROBUSTNESS_METHODS
from lookalike.evaluate.robustness_run import default_methods
from lookalike.settings import CLASSIC_DESCRIPTORS, SearchSettings


def test_methods_are_modes_fusions_and_peers() -> None:
    assert parse_method("asmk") == Method("asmk", {"mode": "asmk", "fuse": (), "verify": 0})
    assert parse_method("colour") == Method("colour", {"mode": "colour", "fuse": ()})
    assert parse_method("fused+classic") == Method(
        "fused+classic", {"mode": "fused", "fuse": CLASSIC_DESCRIPTORS}
    )
    assert parse_method("lookalike") == Method("lookalike", {})
    assert parse_method("lookalike+rootsift").search == {"fuse": ("rootsift",)}
    assert parse_method("global+shape+colour").search == {
        "mode": "global",
        "fuse": ("shape", "colour"),
    }
    assert parse_method("fused+rootsift").search == {"mode": "fused", "fuse": ("rootsift",)}
    assert parse_method("fused+colour+texture+shape").search == METHODS["fused+classic"]
    assert parse_method("phash") == Method("phash", {}, peer=True)
    assert parse_method("gem").peer


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sift", "unknown method 'sift'"),
        ("fused+sift", "cannot fuse 'sift'"),
        ("colour+texture", "fused into a CNN mode only"),
        ("phash+colour", "unknown method"),
        ("lookalike+colour", "unknown method"),
    ],
)
def test_unknown_methods_are_explained(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_method(name)


def test_the_registry_agrees_with_the_rule_for_composed_names() -> None:
    """A named method spelled like a composed name ranks as that name would: the same mode,
    the same fusions; it may set its own second stage."""
    for name, options in METHODS.items():
        if isinstance(options, str):
            assert options == "peer" and name in ("phash", "gem")
            continue
        if name.startswith("lookalike"):  # the index's own search: its mode, its fusions
            assert "mode" not in options
            continue
        mode, *fused = name.split("+")
        assert options["mode"] == mode
        assert options["fuse"] == (CLASSIC_DESCRIPTORS if fused == ["classic"] else tuple(fused))


def test_options_are_keywords_of_search_and_give_valid_settings() -> None:
    keywords = inspect.signature(Collection.search).parameters
    for name in METHODS:
        method = parse_method(name)
        assert set(method.search) <= set(keywords), name
        assert (method.settings() is None) == method.peer
    # over an index's stored settings, what a method leaves out is the index's
    stored = SearchSettings(mode="asmk", fuse=("colour",))
    assert parse_method("lookalike").settings(stored) == stored
    assert parse_method("colour").settings(stored) == SearchSettings(mode="colour")
    assert parse_method("lookalike+rootsift").settings(stored) == SearchSettings(
        mode="asmk", fuse=("rootsift",)
    )


def test_robustness_scores_the_named_methods_in_order() -> None:
    assert ROBUSTNESS_METHODS == (
        "lookalike",
        "asmk",
        "global",
        "fused+classic",
        "colour",
        "texture",
        "shape",
        "rootsift",
        "lookalike+rootsift",
        "phash",
        "gem",
    )

    def stored(sift: bool) -> SimpleNamespace:
        return SimpleNamespace(settings=SimpleNamespace(sift=SimpleNamespace(enabled=sift)))

    without = [m for m in ROBUSTNESS_METHODS if "rootsift" not in m]
    assert default_methods(stored(False)) == without
    assert default_methods(stored(True)) == list(ROBUSTNESS_METHODS)
