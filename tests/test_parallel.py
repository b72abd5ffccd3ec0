"""The pieces of multi-process training that need no second process (the ranks themselves: test_distributed).

How a global batch is cut over ranks, what the launcher makes of train.nproc and
PRUNELAB_TORCHRUN, what ranks other than 0 may do (nothing written, nothing logged), the
evaluation batch that adapts to the model, and the memory-mapped prepared dataset.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from prunelab import atomic, config
from prunelab.data.spec import load_prepared, save_prepared
from prunelab.errors import ConfigError, PrunelabError
from prunelab.parallel import ONE_PROCESS, World, current, ddp, launch
from prunelab.pruning.imp import RewindPoints
from prunelab.train import evaluate as ev
from prunelab.train import fit


@pytest.mark.parametrize(("n", "batch", "size"), [(3500, 100, 2), (3500, 96, 2), (1000, 128, 4), (10, 8, 3), (5, 4, 4)])
def test_the_ranks_parts_of_each_global_batch_are_the_global_batch(n, batch, size):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    per_rank = [list(ddp.rank_batches(order, batch, World(rank, size))) for rank in range(size)]
    assert len({len(batches) for batches in per_rank}) == 1  # every rank takes part in every step
    for step, start in enumerate(range(0, n, batch)):
        parts = [per_rank[rank][step] for rank in range(size)]
        assert {m for _, m in parts} == {len(order[start : start + batch])}  # each knows the global batch size
        assert torch.equal(torch.cat([idx for idx, _ in parts]), order[start : start + batch])
        assert max(len(idx) for idx, _ in parts) - min(len(idx) for idx, _ in parts) <= 1


@pytest.mark.parametrize(("n", "size"), [(500, 2), (7, 3), (2, 4), (0, 2)])
def test_evaluation_slices_cover_the_split_once(n, size):
    covered = [i for rank in range(size) for i in range(n)[ddp.rank_slice(n, World(rank, size))]]
    assert covered == list(range(n))


def test_the_ranks_training_steps_average_to_the_one_process_step(monkeypatch, tiny_data):
    """fit's own training step (``train_epoch``) on each rank of 2, with the gradients then averaged
    as DDP does, gives the one-process step's gradient at every step, and the ranks' summed losses
    and hits give the one-process epoch's: the scaling (size / global batch) and the slicing are
    prunelab's, so a scaling bug shows here. 27 images in batches of 16: the last global batch is
    short (11) and splits unevenly over the ranks (6 and 5)."""
    images, labels = tiny_data.train.images[:27], tiny_data.train.labels[:27]
    order = torch.randperm(27, generator=torch.Generator().manual_seed(0))

    def one_epoch(world: World) -> tuple[list[list[torch.Tensor]], dict[str, float]]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
        # lr 0: the weights never move, so every step's gradient is taken at the same point on every rank
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        grads: list[list[torch.Tensor]] = []

        def keep() -> None:
            grads.append([p.grad.clone() for p in model.parameters()])

        # no process group here: the ranks' loss and hit counts are summed below instead of by all_reduce
        monkeypatch.setattr(ddp, "all_sum", lambda *values: [v.double() for v in values])
        result = fit.train_epoch(model, optimizer, images, labels, 16, order, on_batch=keep, world=world)
        return grads, result

    whole, one = one_epoch(ONE_PROCESS)
    ranks = [one_epoch(World(rank, 2)) for rank in range(2)]
    assert len(whole) == 2 and all(len(grads) == 2 for grads, _ in ranks)  # every rank takes every step
    for step, expected in enumerate(whole):
        for i, grad in enumerate(expected):
            torch.testing.assert_close((ranks[0][0][step][i] + ranks[1][0][step][i]) / 2, grad)
    for key in ("train_loss", "train_accuracy"):
        assert sum(result[key] for _, result in ranks) == pytest.approx(one[key], rel=1e-6)


def test_one_node_is_standalone_and_nodes_share_out_the_ranks(monkeypatch):
    monkeypatch.delenv(launch.TORCHRUN_ENV, raising=False)
    args, per_node = launch.torchrun_args(2, "cpu", ["stages/sweep.py", "--method", "weight"])
    assert args.standalone and per_node == 2 and args.nproc_per_node == "2"
    assert [args.training_script, *args.training_script_args] == ["stages/sweep.py", "--method", "weight"]
    monkeypatch.setenv(launch.TORCHRUN_ENV, "--nnodes 2 --rdzv-backend c10d --rdzv-endpoint 10.0.0.1:29400 --rdzv-id s")
    args, per_node = launch.torchrun_args(2, "cpu", ["stages/finetune.py"])
    assert not args.standalone and per_node == 1 and args.rdzv_endpoint == "10.0.0.1:29400"
    with pytest.raises(ConfigError, match="a multiple of the 2 nodes"):
        launch.torchrun_args(3, "cpu", ["stages/finetune.py"])
    monkeypatch.setenv(launch.TORCHRUN_ENV, "--nnodes two")
    with pytest.raises(PrunelabError, match="PRUNELAB_TORCHRUN='--nnodes two': not torchrun arguments"):
        launch.torchrun_args(2, "cpu", ["stages/finetune.py"])


def test_more_ranks_than_the_machine_runs_or_an_uneven_batch_is_refused(monkeypatch):
    monkeypatch.delenv(launch.TORCHRUN_ENV, raising=False)
    with pytest.raises(ConfigError, match=rf"train.nproc = {launch.cores() + 1} .*CPU cores per node"):
        launch.torchrun_args(launch.cores() + 1, "cpu", ["stages/finetune.py"])
    with pytest.raises(ConfigError, match=r"train.nproc = 3 .*a divisor of finetune.batch_size \(128\)"):
        launch.check_batches(3, {"train.batch_size": 129, "finetune.batch_size": 128})
    launch.check_batches(4, {"train.batch_size": 128, "finetune.batch_size": 64})
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match=r"train\.nproc"):
            config.TrainConfig(nproc=bad)


def as_rank(monkeypatch, rank: int, size: int = 2) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(size))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(size))


def test_ranks_other_than_0_never_write_and_never_log(monkeypatch, tmp_path):
    as_rank(monkeypatch, 1)
    assert current() == World(1, 2, 1, 2) and not current().writer
    with pytest.raises(RuntimeError, match="rank 1 of 2 tried to write"):
        atomic.write_json(tmp_path / "out.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []
    from prunelab import track

    # a store that cannot even be created: rank 1 must not touch it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/no/such/folder/mlflow.db")
    with track.start_run("stage", params={"a": 1}, tags={}) as run:
        assert run is None
        track.log_metrics({"loss": 1.0})
        track.log_artifacts([tmp_path])
    assert list(tmp_path.iterdir()) == []
    as_rank(monkeypatch, 0)
    assert atomic.write_json(tmp_path / "out.json", {"a": 1}).exists()


def test_one_process_checkpoints_record_no_nproc_and_ranks_do(tiny_model):
    assert "nproc" not in RewindPoints.record(tiny_model, config.TrainConfig(), 0, False).train
    assert RewindPoints.record(tiny_model, config.TrainConfig(nproc=2), 0, False).train["nproc"] == 2


class Wide(nn.Module):
    """Large activations per image (a 64-channel 64x64 map) from a small input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 64, 3, padding=1), nn.Linear(64, 4)

    def forward(self, x):
        return self.head(self.conv(nn.functional.interpolate(x, size=64)).mean(dim=(2, 3)))


def test_the_evaluation_batch_shrinks_where_activations_would_not_fit(monkeypatch, tiny_model, tiny_data):
    assert ev.eval_batch(tiny_model, tiny_data.test.images) == ev.EVAL_BATCH  # small models: the full batch
    model = Wide().eval()
    per_image = ev.activation_bytes(model, ev.scaled(tiny_data.test.images[:2]))
    assert per_image >= 2 * 64 * 64 * 64 * 4  # the conv's output at least, with the factor of 2
    monkeypatch.setattr(ev, "device_memory", lambda device: 100 * per_image * 8)  # CPU share: 1/8
    assert ev.eval_batch(model, tiny_data.test.images) == 100
    small = ev.evaluate(model, tiny_data.test)  # in batches of 100 ...
    whole = ev.evaluate(model, tiny_data.test, batch_size=ev.EVAL_BATCH)  # ... or all at once
    assert small["accuracy"] == whole["accuracy"]
    assert small["loss"] == pytest.approx(whole["loss"], rel=1e-6)


def mapped_ranges(path) -> list[tuple[int, int]]:
    """The address ranges where this process maps ``path`` (Linux's /proc/self/maps)."""
    ranges = []
    for line in open("/proc/self/maps").read().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == str(path):
            lo, hi = (int(a, 16) for a in fields[0].split("-"))
            ranges.append((lo, hi))
    return ranges


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads Linux's /proc/self/maps")
def test_the_prepared_dataset_is_memory_mapped_not_copied(tmp_path, tiny_data):
    path = save_prepared(tiny_data, tmp_path / "dataset.pt")
    loaded = load_prepared(path)
    ranges = mapped_ranges(path)
    assert ranges
    for split in (loaded.train, loaded.val, loaded.test):  # the images are the file's pages: shared between ranks
        assert any(lo <= split.images.data_ptr() < hi for lo, hi in ranges)
    assert torch.equal(loaded.train.images, tiny_data.train.images)


@pytest.mark.parametrize(("n", "shape"), [(1, (1, 4, 4)), (7, (3, 5, 3)), (3000, (1, 8, 8)), (1500, (3, 4, 4))])
def test_normalisation_counts_the_pixels_and_gives_the_float64_reduction(monkeypatch, n, shape):
    """No float64 copy of the split (16x its bytes per rank), and the same float32 statistics as with one."""
    import prunelab.data.spec as spec_module

    monkeypatch.setattr(spec_module, "NORMALISATION_CHUNK", 64)  # several chunks, a short last one
    images = torch.randint(0, 256, (n, *shape), generator=torch.Generator().manual_seed(n), dtype=torch.uint8)
    split = spec_module.Split(images, torch.zeros(n, dtype=torch.int64))
    mean, std = spec_module.DataSpec("x", ("a",), split, split, split).normalisation()
    x = images.to(torch.float64) / 255.0
    assert torch.equal(mean, x.mean(dim=(0, 2, 3)).float())
    expected = x.std(dim=(0, 2, 3)).clamp_min(1e-6).float()
    assert torch.equal(std, expected)
