"""Shared fixtures: a tiny synthetic dataset and tiny model so unit tests run in seconds."""

from __future__ import annotations

import os

import pytest
import torch

# No network from tests: MLflow telemetry and DVC analytics off before anything imports them.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# One pytest-xdist worker per core: torch's threads in each worker (and in the stage processes
# it starts, through OMP_NUM_THREADS) would otherwise fight over the same cores. Measured on the
# 2-core machine: the fast tier takes half the time with one thread per worker.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from project import Built, build_tiny  # tests/ is on sys.path

from prunelab.config import ModelConfig
from prunelab.data.spec import DataSpec, Split
from prunelab.models import build_for


def make_split(n: int, seed: int, classes: int = 4, shape=(1, 8, 8)) -> Split:
    """Learnable toy data: each class lights up its own block of pixels, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, *shape), generator=g, dtype=torch.int64)
    block = shape[1] // classes
    for c in range(classes):
        images[labels == c, :, c * block : (c + 1) * block, :] += 180
    return Split(images.clamp(0, 255).to(torch.uint8), labels)


@pytest.fixture
def tiny_data() -> DataSpec:
    return DataSpec(
        name="toy", classes=tuple("abcd"), train=make_split(256, 0), val=make_split(64, 1), test=make_split(64, 2)
    )


@pytest.fixture
def tiny_model_cfg() -> ModelConfig:
    return ModelConfig(name="mlp", hidden=(32, 16), bias=False)


@pytest.fixture
def tiny_model(tiny_model_cfg, tiny_data) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_for(tiny_model_cfg, tiny_data)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    """The tiny project every e2e module copies (``project.copy_built``), built once per pytest run.

    Under pytest-xdist each worker has its own temporary folder; their parent is the run's,
    so the workers build it once between them."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return build_tiny(shared / "tiny-project")


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL of the module's own (tests/servers.py), with MLflow's schema in a template."""
    from servers import postgres_for_module  # only the modules with servers pay for its imports

    yield from postgres_for_module()


def pytest_collection_modifyitems(items) -> None:
    """The e2e modules first, then the fast tests, each in file order.

    pytest-xdist (``--dist loadfile --no-loadscope-reorder``, pyproject.toml) hands each file
    whole to one worker in this order: an e2e module's fixtures (a project, a server) are
    built once, and the long modules start first while the fast files fill in around them.
    """
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)  # stable: file order kept
