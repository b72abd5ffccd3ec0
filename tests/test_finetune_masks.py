"""Masks persist: pruned weights stay exactly zero through fine-tuning and saving."""

import pytest
import torch

from prunelab.config import FinetuneConfig
from prunelab.pruning import METHODS, MaskMethod
from prunelab.pruning.masks import make_permanent
from prunelab.pruning.options import configure
from prunelab.pruning.point import prune
from prunelab.train import checkpoint
from prunelab.train.evaluate import evaluate
from prunelab.train.fit import fit

MASK_METHODS = [m.name for m in METHODS.values() if isinstance(m, MaskMethod)]  # structural: test_models_structured


def prune_masks(model, method, k):
    pruned = prune(model, configure(method=method, sparsity=k), (1, 8, 8))
    return pruned.layers, pruned.masks


@pytest.mark.parametrize("method", MASK_METHODS)
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_pruned_weights_stay_zero_through_finetuning(tiny_model, tiny_data, method, optimizer):
    layers, masks = prune_masks(tiny_model, method, 0.75)
    cfg = FinetuneConfig(epochs=3, batch_size=32, lr=0.05, optimizer=optimizer, weight_decay=0.01)
    fit(tiny_model, tiny_data, cfg, seed=0, device=torch.device("cpu"), leave=False)
    for name, module in layers.items():
        assert torch.all(module.weight[masks[name] == 0] == 0), f"{name} pruned weights moved during training"
        assert torch.any(module.weight[masks[name] == 1] != 0)
    make_permanent(tiny_model)
    for name, module in layers.items():
        assert not hasattr(module, "weight_mask")
        assert torch.all(module.weight[masks[name] == 0] == 0)


def test_checkpoint_roundtrip_is_safe_and_exact(tmp_path, tiny_model, tiny_model_cfg, tiny_data):
    _, masks = prune_masks(tiny_model, "weight", 0.5)
    make_permanent(tiny_model)
    path = tmp_path / "m.pt"
    checkpoint.save(
        path,
        checkpoint.Checkpoint(
            tiny_model, tiny_model_cfg, tiny_data.input_shape, tiny_data.num_classes, masks, {"method": "weight"}
        ),
    )
    torch.load(path, weights_only=True)  # no arbitrary pickle inside
    loaded = checkpoint.load(path)
    x = tiny_data.test.images.float() / 255
    tiny_model.eval()
    loaded.model.eval()
    assert torch.equal(tiny_model(x), loaded.model(x))
    assert loaded.meta == {"method": "weight"}
    assert all(torch.equal(loaded.masks[k], masks[k]) for k in masks)
    assert evaluate(loaded.model, tiny_data.test) == evaluate(tiny_model, tiny_data.test)


def test_saving_with_masks_attached_is_refused(tmp_path, tiny_model, tiny_model_cfg, tiny_data):
    prune_masks(tiny_model, "weight", 0.5)
    with pytest.raises(ValueError, match="make pruning permanent"):
        checkpoint.save(
            tmp_path / "m.pt",
            checkpoint.Checkpoint(tiny_model, tiny_model_cfg, tiny_data.input_shape, tiny_data.num_classes),
        )
    assert not (tmp_path / "m.pt").exists()
