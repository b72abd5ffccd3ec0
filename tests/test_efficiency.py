"""cost and speed: FLOPs and bytes against hand-computed values, timing and memory mechanics, the metrics."""

import copy
import statistics
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
from torch import nn

from prunelab.config import FinetuneConfig, ModelConfig
from prunelab.errors import ConfigError
from prunelab.export import export_model, load_export
from prunelab.measure import METRICS, Subject
from prunelab.measure.epoch import train_epoch_cost
from prunelab.measure.flops import count_flops, export_flops_per_image, flops_per_image
from prunelab.measure.latency import compare_latency
from prunelab.measure.memory import PeakMemory
from prunelab.measure.timing import QUICK, Timing, TimingPolicy, interleaved
from prunelab.models import MODELS
from prunelab.pruning import METHODS
from prunelab.pruning.masks import make_permanent
from prunelab.pruning.options import configure
from prunelab.train import checkpoint


def tiny_net() -> nn.Module:
    """conv 1->2 (3x3, pad 1) on 5x5, then Linear 50->3 with a bias: FLOPs by hand below."""
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(conv=nn.Conv2d(1, 2, 3, padding=1, bias=False), flatten=nn.Flatten(), fc=nn.Linear(50, 3))
    ).eval()


def test_flops_of_a_tiny_network_by_hand():
    net = tiny_net()
    # conv: 25 output positions x 2 filters x 9 multiply-adds; fc: 50 x 3; 2 FLOPs each (biases not counted)
    dense = 2 * (25 * 2 * 9 + 50 * 3)
    assert flops_per_image(net, (1, 5, 5)) == {"flops_dense": dense, "flops_ideal": dense}
    with torch.no_grad():
        net.conv.weight[0] = 0  # one whole filter: 9 weights x 25 positions
        net.fc.weight[:, :10] = 0  # 30 weights, each used once
    assert flops_per_image(net, (1, 5, 5)) == {"flops_dense": dense, "flops_ideal": dense - 2 * (9 * 25 + 30)}
    total, work = count_flops(net, (1, 5, 5), batch=4)
    assert total == 4 * dense
    assert {n: (w.numel, w.nnz, w.uses) for n, w in work.items()} == {"conv": (18, 9, 100), "fc": (150, 120, 4)}


def test_flops_of_a_grouped_strided_conv_and_the_r1_mlp():
    conv = nn.Conv2d(4, 6, 3, stride=2, groups=2, bias=False)  # 7x7 -> 3x3; each output: 2 x 9 multiply-adds
    assert flops_per_image(conv, (4, 7, 7))["flops_dense"] == 2 * (9 * 6 * 2 * 9)
    r1 = MODELS.get("mlp")(ModelConfig(), (1, 28, 28), 10)
    assert flops_per_image(r1, (1, 28, 28))["flops_dense"] == 2 * (
        784 * 1000 + 1000 * 1000 + 1000 * 500 + 500 * 200 + 200 * 10
    )


def test_flops_the_export_executes_follow_its_kernels(tiny_model, tmp_path):
    METHODS.get("weight").prune(tiny_model, configure(method="weight", sparsity=0.75), (1, 8, 8))
    make_permanent(tiny_model)
    info = export_model(tiny_model, (1, 8, 8), tmp_path / "m", structural=False, force="dense")
    # mlp 64 -> 32 -> 16 -> 4: fc1 and fc2 at 25 % density, the classifier dense
    dense = 2 * (64 * 32 + 32 * 16 + 16 * 4)
    sparse = 2 * (512 + 128 + 64)
    assert flops_per_image(tiny_model, (1, 8, 8)) == {"flops_dense": dense, "flops_ideal": sparse}
    assert export_flops_per_image(load_export(info.path, force="dense", batch_sizes=(1,)), 1) == dense
    on_sparse = load_export(info.path, force="sparse", batch_sizes=(1,))
    assert export_flops_per_image(on_sparse, 1) == sparse
    mixed = load_export(
        info.path,
        batch_sizes=(1, 64),
        kernels={1: {"fc1": "dense", "fc2": "dense"}, 64: {"fc1": "sparse", "fc2": "dense"}},
    )
    assert export_flops_per_image(mixed, 1) == dense
    assert export_flops_per_image(mixed, 64) == dense - 2 * (64 * 32 - 512)


def test_flops_of_the_rows_kernel_count_only_the_rows_that_are_not_empty(tiny_model, tmp_path):
    METHODS.get("unit").prune(tiny_model, configure(method="unit", sparsity=0.5), (1, 8, 8))
    make_permanent(tiny_model)
    info = export_model(tiny_model, (1, 8, 8), tmp_path / "m", structural=False, force="rows")
    # fc1 keeps 16 of 32 rows (64 inputs each), fc2 8 of 16 (32 inputs), the classifier 4 x 16
    rows = 2 * (16 * 64 + 8 * 32 + 16 * 4)
    assert export_flops_per_image(load_export(info.path, force="rows", batch_sizes=(1,)), 1) == rows
    assert flops_per_image(tiny_model, (1, 8, 8))["flops_ideal"] == rows  # whole rows: ideal is reached


def test_cost_reports_exact_bytes_of_the_files(tiny_model, tiny_model_cfg, tmp_path):
    path = checkpoint.save(tmp_path / "m.pt", checkpoint.Checkpoint(tiny_model, tiny_model_cfg, (1, 8, 8), 4))
    info = export_model(tiny_model, (1, 8, 8), tmp_path / "m", structural=False, force="dense")
    values = METRICS.get("cost")(Subject(tiny_model, input_shape=(1, 8, 8), checkpoint=path, export=info))
    assert values == {
        "flops_dense": 2 * (64 * 32 + 32 * 16 + 16 * 4),
        "flops_ideal": 2 * (64 * 32 + 32 * 16 + 16 * 4),
        "checkpoint_bytes": path.stat().st_size,
        "export_bytes": info.path.stat().st_size,
    }
    assert METRICS.get("cost")(Subject(tiny_model)) == {}  # nothing known: nothing measured


def test_timing_statistics_and_interleaving(monkeypatch):
    t = Timing((5.0, 1.0, 3.0, 2.0, 4.0), batch=8)
    assert t.median == 3.0 and t.iqr == 2.0 and t.throughput == 8 / 3.0
    order = []
    timings = interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=4, warmup=1, min_sample_s=0
    )
    # warm-up, one call each to size the samples, then per round each side one timed call (a call
    # that alone fills a sample gets no untimed call before it), the order alternating
    assert order == ["a", "b", "a", "b"] + ["a", "b", "b", "a"] * 2

    # calls shorter than a sample: repeated (here 3 times, on a clock each call moves by 1 s),
    # after an untimed call that warms the caches the other side used
    import types

    from prunelab.measure import timing

    clock = [0.0]
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))

    def side(name):
        return lambda: (order.append(name), clock.__setitem__(0, clock[0] + 1.0))

    order.clear()
    repeated = interleaved({"a": side("a"), "b": side("b")}, rounds=2, warmup=0, min_sample_s=2.5)
    assert order == ["a", "b"] + ["a"] * 4 + ["b"] * 4 + ["b"] * 4 + ["a"] * 4
    assert repeated["a"].seconds == (1.0, 1.0)
    assert all(len(v.seconds) == 4 and v.threads == torch.get_num_threads() for v in timings.values())


def test_compare_latency_times_every_side_on_the_same_input(tiny_model):
    seen = []
    probe = nn.Sequential(tiny_model)
    probe.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    times = compare_latency({"model": tiny_model, "probe": probe}, (1, 8, 8), 16, policy=TimingPolicy(rounds=3))
    assert set(times) == {"model", "probe"} and all(t.batch == 16 and t.median > 0 for t in times.values())
    assert set(seen) == {torch.Size([16, 1, 8, 8])} and tiny_model.training  # mode restored


def test_peak_memory_on_the_cpu_sees_a_large_allocation():
    peak = PeakMemory("cpu")
    with peak:
        block = torch.ones(16 * 2**20 // 4)  # 16 MiB, every page touched
        del block
    if peak.bytes is None:
        pytest.skip(peak.what)
    assert peak.bytes >= 15 * 2**20 and "RSS" in peak.what


def test_measurements_after_the_first_still_collect_new_reference_cycles():
    import gc
    import weakref

    class Node:
        other: object = None

    with PeakMemory("cpu"):  # the first measurement freezes what survives its collection
        pass
    assert gc.get_freeze_count() > 0
    gc.disable()  # only the measurement's own collection may free the cycle
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
        assert alive() is not None  # a cycle: reference counting alone does not free it
        with PeakMemory("cpu"):
            assert alive() is None
    finally:
        gc.enable()


def test_training_epoch_cost_leaves_the_model_alone(tiny_model, tiny_data):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    cost = train_epoch_cost(tiny_model, tiny_data.train, FinetuneConfig(batch_size=64))
    assert cost["train_epoch_s"] > 0 and (cost["peak_train_bytes"] is None or cost["peak_train_bytes"] >= 0)
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())


def test_a_device_that_is_not_there_is_the_train_device_error(tiny_model):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for measure in (
        lambda: PeakMemory("cuda"),
        lambda: compare_latency({"m": tiny_model}, (1, 8, 8), 1, device="cuda"),
        lambda: train_epoch_cost(tiny_model, None, FinetuneConfig(), device="cuda:0"),
    ):
        with pytest.raises(ConfigError, match=r"train\.device = 'cuda'.*no CUDA device"):
            measure()


def test_speed_measures_every_declared_column_and_keeps_them_out_of_dvc_files(tiny_model, tiny_data, tmp_path):
    info = export_model(tiny_model, (1, 8, 8), tmp_path / "m", structural=False, force="dense")
    metric = METRICS.get("speed")
    values = metric(
        Subject(
            tiny_model,
            split=tiny_data.test,
            export=info,
            train=tiny_data.train,
            optim=FinetuneConfig(batch_size=64),
            reference=copy.deepcopy(tiny_model),
        )
    )
    assert set(values) == {c.name for c in metric.columns}
    load = {"own_cores", "other_cores", "timing_spread", "noisy"}  # 0 or False on a quiet machine
    assert all(v > 0 for k, v in values.items() if "peak" not in k and not k.endswith("iqr_ms") and k not in load)
    assert isinstance(values["noisy"], bool) and values["cpus"] >= 1
    # the speed-ups are the dense model's timings over the export's, from the same rounds
    assert values["speedup_b1"] == values["dense_latency_b1_ms"] / values["export_latency_b1_ms"]
    assert values["speedup_eval"] == values["export_throughput_ips"] / values["dense_throughput_ips"]
    assert not any(c.table or c.point for c in metric.columns)
    assert all(c.table and c.point for c in METRICS.get("cost").columns)
    assert statistics.median([values["latency_b1_ms"], values["export_latency_b1_ms"]]) > 0


def test_measure_still_imports_no_torch():
    code = "import sys, prunelab.measure; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_a_reference_nothing_dense_is_reported_and_a_fine_tuning_gives_the_epoch_time(tiny_model):
    from prunelab.train.fit import FitResult

    history = [
        {"epoch": 1, "data_time": 0.1, "step_time": 0.5, "epoch_time": 0.9},
        {"epoch": 2, "data_time": 0.1, "step_time": 0.7, "epoch_time": 1.0},
        {"epoch": 3, "data_time": 0.2, "step_time": 0.9, "epoch_time": 1.3},
    ]
    values = METRICS.get("speed")(Subject(tiny_model, input_shape=(1, 8, 8), fit=FitResult(history), timing=QUICK))
    assert not [k for k in values if k.startswith("dense_") or k.startswith("speedup")]
    assert values["train_epoch_s"] == pytest.approx(0.8)  # median training pass, validation left out


def test_the_size_ratio_is_against_the_dense_file(tiny_model, tmp_path):
    info = export_model(tiny_model, (1, 8, 8), tmp_path / "m", structural=False, force="dense")
    values = METRICS.get("cost")(Subject(tiny_model, input_shape=(1, 8, 8), export=info, dense_bytes=4 * info.bytes))
    assert values["export_bytes"] == (tmp_path / "m.pt2").stat().st_size
    assert values["export_size_ratio"] == 0.25
    assert "export_size_ratio" not in METRICS.get("cost")(Subject(tiny_model, input_shape=(1, 8, 8), export=info))


def test_the_cuda_paths_without_a_gpu(monkeypatch):
    """What runs on CUDA, against a stand-in for torch.cuda: the peak is max_memory_allocated
    minus what was allocated at the start, and every timed sample is synchronised."""
    from prunelab.measure import memory, timing

    calls = {"sync": 0, "reset": 0}
    allocated = iter([100, 100])  # at the start, then whatever it is later
    monkeypatch.setattr(memory, "device_of", lambda name: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.__setitem__("sync", calls["sync"] + 1))
    monkeypatch.setattr(
        torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.__setitem__("reset", calls["reset"] + 1)
    )
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: next(allocated))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 612)
    with memory.PeakMemory("cuda") as peak:
        pass
    assert peak.bytes == 512 and calls["reset"] == 1 and "max_memory_allocated" in peak.what
    calls["sync"] = 0
    timings = timing.interleaved(
        {"a": lambda: None, "b": lambda: None}, device="cuda", rounds=3, warmup=1, min_sample_s=0.0
    )
    # after warm-up, after each side's calibration call, after each of 3 rounds x 2 sides' samples
    assert calls["sync"] == 1 + 2 + 3 * 2 and all(len(t.seconds) == 3 for t in timings.values())


# -- the speed columns' order and the load the timings ran under ---------------------------------

SPEED_COLUMNS_BEFORE_LOAD = [  # the order the timings files and results/efficiency/points.csv have always had
    "threads",
    "latency_b1_ms",
    "latency_b1_iqr_ms",
    "eval_batch",
    "throughput_ips",
    "export_latency_b1_ms",
    "export_latency_b1_iqr_ms",
    "export_throughput_ips",
    "peak_infer_bytes",
    "export_peak_infer_bytes",
    "dense_latency_b1_ms",
    "dense_latency_b1_iqr_ms",
    "dense_throughput_ips",
    "dense_peak_infer_bytes",
    "speedup_b1",
    "speedup_eval",
    "export_flops_b1",
    "export_flops_eval",
    "train_epoch_s",
    "dense_train_epoch_s",
    "dense_peak_train_bytes",
    "peak_train_bytes",
]
LOAD_COLUMNS = ["cpus", "load_1m", "own_cores", "other_cores", "timing_spread", "noisy"]


def test_the_load_columns_are_appended_after_every_earlier_speed_column():
    assert [c.name for c in METRICS.get("speed").columns] == SPEED_COLUMNS_BEFORE_LOAD + LOAD_COLUMNS
    assert [c.name for c in METRICS.get("cost").columns] == [
        "flops_dense",
        "flops_ideal",
        "checkpoint_bytes",
        "export_bytes",
        "export_size_ratio",
    ]


def test_a_spread_timing_is_noisy_and_a_tight_one_is_not():
    from prunelab.measure.load import SPREAD_LIMIT, MachineLoad, noisy, timing_spread

    quiet = MachineLoad(threads=2, cpus=2, load_1m=0.5, own_cores=2.0, other_cores=0.0)
    spread = Timing((1.0, 1.0, 2.0, 3.0, 3.0))  # median 2, IQR 2: the middle half spans the median's size
    tight = Timing((1.00, 1.01, 1.02, 1.01, 1.00))
    assert spread.spread == 1.0 and tight.spread < 0.02 < SPREAD_LIMIT
    assert noisy([tight, spread], quiet) and not noisy([tight, tight], quiet)
    assert timing_spread([tight, spread]) == 1.0 and timing_spread([]) == 0.0
    values = quiet.values([tight])
    assert list(values) == LOAD_COLUMNS and values["noisy"] is False and values["other_cores"] == 0.0


def test_timings_under_contention_are_noisy_however_tight():
    from prunelab.measure.load import MachineLoad, noisy

    tight = [Timing((1.00, 1.01, 1.02))]
    # every core held by this process's threads: another process's steady core takes from them
    assert noisy(tight, MachineLoad(threads=2, cpus=2, other_cores=1.0))
    assert not noisy(tight, MachineLoad(threads=2, cpus=2, other_cores=0.05))  # background daemons
    # cores its threads leave free may be used by others without contention
    assert not noisy(tight, MachineLoad(threads=1, cpus=4, other_cores=2.0))
    assert noisy(tight, MachineLoad(threads=1, cpus=4, other_cores=3.5))
    # without /proc/stat: the load average against the cores
    assert noisy(tight, MachineLoad(threads=2, cpus=2, load_1m=4.0))
    assert not noisy(tight, MachineLoad(threads=2, cpus=2, load_1m=1.9))


def test_the_machine_load_is_measured_over_the_block():
    import time

    from prunelab.measure.load import MachineLoad

    with MachineLoad(threads=1) as load:
        end = time.perf_counter() + 0.2
        while time.perf_counter() < end:  # busy: this process's own CPU time
            pass
    assert load.own_cores is not None and load.own_cores > 0.3
    assert load.cpus >= 1 and (load.other_cores is None or load.other_cores >= 0)


def test_speed_flags_a_spread_timing_noisy_and_records_the_load(tiny_model, monkeypatch):
    from prunelab.measure import load, speed

    monkeypatch.setattr(load, "machine_seconds", lambda: (0.0, 0.0))  # a machine nobody else uses
    monkeypatch.setattr(load, "_own_seconds", lambda: 0.0)
    monkeypatch.setattr(load, "_load_1m", lambda: 0.25)
    seen = []

    def timings(seconds):
        def compare(modules, shape, batch, *, device, policy):
            seen.append(policy)
            return {name: Timing(seconds, batch) for name in modules}

        return compare

    subject = Subject(tiny_model, input_shape=(1, 8, 8), reference=copy.deepcopy(tiny_model), timing=QUICK)
    monkeypatch.setattr(speed, "compare_latency", timings((1.0, 1.0, 1.0)))
    values = METRICS.get("speed")(subject)
    assert values["noisy"] is False and values["timing_spread"] == 0.0 and values["load_1m"] == 0.25
    assert values["other_cores"] == 0.0 and seen == [QUICK, QUICK]  # both batch sizes, the subject's preset
    monkeypatch.setattr(speed, "compare_latency", timings((1.0, 1.0, 2.0, 3.0, 3.0)))
    values = METRICS.get("speed")(subject)
    assert values["noisy"] is True and values["timing_spread"] == 1.0
