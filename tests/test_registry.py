import pytest

from prunelab.data import DATASETS
from prunelab.errors import PrunelabError
from prunelab.models import MODELS
from prunelab.pruning import METHODS
from prunelab.registry import Registry


def test_duplicate_name_is_an_error():
    reg: Registry = Registry("thing")
    reg.register("a")(object())
    with pytest.raises(ValueError, match="duplicate thing name 'a'"):
        reg.register("a")(object())


def test_unknown_name_lists_known_ones():
    reg: Registry = Registry("thing")
    reg.register("b")(1)
    reg.register("a")(2)
    with pytest.raises(PrunelabError, match=r"unknown thing 'c'; known: a, b"):
        reg.get("c")


def test_project_registries_hold_the_spine_plugins():
    assert {"mnist-5k", "mnist"} <= set(DATASETS.names())
    assert "mlp" in MODELS
    assert {"weight", "unit"} <= set(METHODS.names())
