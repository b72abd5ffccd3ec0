"""docs/reference-studies.md's one command per reference study: written verbatim there, every value valid."""

from pathlib import Path

import pytest
import torch

from prunelab import config, paths
from prunelab.data import data_config
from prunelab.models import MODELS, check_input_size, model_config
from prunelab.pipeline import studies
from prunelab.pruning import METHODS, point_config, prune_config, sweep_config

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "reference-studies.md").read_text(encoding="utf-8")
# input shape and class count of each dataset a study uses (realwaste: data.image_size)
DATASETS = {"mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10), "realwaste": ((3, None, None), 9)}


@pytest.mark.parametrize("name", studies.STUDIES)
def test_study_command_is_in_the_docs(name):
    assert studies.command(name) in PAGE


@pytest.mark.parametrize("name", studies.STUDIES)
def test_study_params_are_valid_and_its_model_fits_its_data(name):
    params = studies.apply(config.load_params(ROOT / paths.PARAMS), studies.STUDIES[name].overrides)
    data, model_cfg = data_config(params), model_config(params)
    prune_cfg, sweep_cfg = prune_config(params), sweep_config(params)
    for cls in (config.TrainConfig, config.FinetuneConfig):
        config.section(params, cls)
    shape, classes = DATASETS[data.name]
    shape = (shape[0], shape[1] or data.image_size, shape[2] or data.image_size)
    check_input_size(model_cfg, shape, classes)
    with torch.device("meta"):
        model = MODELS.get(model_cfg.name)(
            config.ModelConfig(**{**model_cfg.as_dict(), "pretrained": False}), shape, classes
        )
    METHODS.get(prune_cfg.method).check_model(model, model_cfg.name, prune_cfg)
    for method in sweep_cfg.methods:
        for k in sweep_cfg.sparsities:
            METHODS.get(method).check_model(model, model_cfg.name, point_config(prune_cfg, method, k))


def test_overrides_set_nested_keys_without_touching_the_rest():
    params = {"prune": {"method": "weight", "norm": "l2"}, "seed": 0}
    out = studies.apply(params, {"prune.method": "filter", "sweep.methods": ["a"]})
    assert out == {"prune": {"method": "filter", "norm": "l2"}, "seed": 0, "sweep": {"methods": ["a"]}}
    assert params["prune"]["method"] == "weight"


def test_command_quotes_lists_for_the_shell():
    assert "-S 'sweep.methods=[weight]'" in studies.command("r2-mnist")
    assert "-S model.bias=false" in studies.command("r2-cifar")
