import copy

import pytest
import torch

from prunelab.config import FinetuneConfig, TrainConfig
from prunelab.models import build_for
from prunelab.seeding import seed_everything
from prunelab.train import fit

CPU = torch.device("cpu")


def test_fit_learns_and_records_every_epoch(tiny_model, tiny_data):
    before = fit.evaluate(tiny_model, tiny_data.val)
    result = fit.fit(tiny_model, tiny_data, TrainConfig(epochs=4, batch_size=32), seed=0, device=CPU, leave=False)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    for record in result.history:
        assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_time"} <= set(record)
    assert result.history[-1]["val_loss"] < before["loss"]
    assert result.history[-1]["val_accuracy"] > 0.9
    assert result.best_epoch == 4 and not result.stopped_early


def test_same_seed_same_result(tiny_model_cfg, tiny_data):
    def run():
        seed_everything(3)
        model = build_for(tiny_model_cfg, tiny_data)
        hist = fit.fit(model, tiny_data, TrainConfig(epochs=2, batch_size=32), seed=3, device=CPU, leave=False).history
        return [{k: v for k, v in r.items() if k not in fit.TIMING_COLUMNS} for r in hist], model.state_dict()

    (h1, s1), (h2, s2) = run(), run()
    assert h1 == h2
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_early_stopping_stops_on_patience_and_restores_best_epoch(tiny_model, tiny_data, monkeypatch):
    scripted_val_losses = iter([1.0, 0.5, 0.7, 0.6, 0.9, 0.1])
    real_evaluate = fit.evaluate
    monkeypatch.setattr(fit, "evaluate", lambda *a, **k: {**real_evaluate(*a, **k), "loss": next(scripted_val_losses)})
    snapshots = {}
    result = fit.fit(
        tiny_model,
        tiny_data,
        FinetuneConfig(epochs=6, batch_size=64, patience=2),
        seed=0,
        device=CPU,
        leave=False,
        on_epoch=lambda r: snapshots.update({r["epoch"]: copy.deepcopy(tiny_model.state_dict())}),
    )
    assert len(result.history) == 4 and result.stopped_early  # epochs 3 and 4 did not beat epoch 2
    assert result.best_epoch == 2
    final = tiny_model.state_dict()
    assert all(torch.equal(final[k], snapshots[2][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[4][k]) for k in final)


def test_min_delta_requires_a_real_improvement(tiny_model, tiny_data, monkeypatch):
    losses = iter([1.0, 0.999, 0.998, 0.5])
    real_evaluate = fit.evaluate
    monkeypatch.setattr(fit, "evaluate", lambda *a, **k: {**real_evaluate(*a, **k), "loss": next(losses)})
    result = fit.fit(
        tiny_model,
        tiny_data,
        FinetuneConfig(epochs=4, batch_size=64, patience=2, min_delta=0.01),
        seed=0,
        device=CPU,
        leave=False,
    )
    assert result.stopped_early and result.best_epoch == 1 and len(result.history) == 3


def test_evaluate_counts_loss_and_accuracy(tiny_data):
    class Oracle(torch.nn.Module):  # predicts the label perfectly for the first half
        def forward(self, x):
            n = x.shape[0]
            logits = torch.zeros(n, 4)
            logits[torch.arange(n), tiny_data.test.labels[:n]] = 10.0
            logits[n // 2 :] = 0.0
            return logits

    out = fit.evaluate(Oracle(), tiny_data.test, batch_size=1024)
    labels = tiny_data.test.labels
    half = len(labels) // 2  # all-zero logits predict class 0
    assert out["accuracy"] == (half + int((labels[half:] == 0).sum())) / len(labels)
    expected_loss = (
        0.5 * torch.nn.functional.cross_entropy(torch.tensor([[10.0, 0, 0, 0]]), torch.tensor([0]))
        + 0.5 * torch.log(torch.tensor(4.0))
    ).item()
    assert out["loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_cuda_requested_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(Exception, match=r"train\.device = 'cuda'"):
        fit.resolve_device("cuda")
    assert fit.resolve_device("auto") == CPU
