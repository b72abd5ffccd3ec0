"""What pruning buys, in the pipeline: the joined table, its curves and summary against
hand-computed values, export folders, and a sweep point's measurement leaving nothing behind."""

import re
from dataclasses import FrozenInstanceError

import pytest
import torch

from prunelab import paths
from prunelab.errors import PrunelabError
from prunelab.measure import timing as policies
from prunelab.pipeline import exports
from prunelab.pruning.options import configure
from prunelab.report import efficiency as report


def point(method, seed, k, acc, size, **extra):
    return {
        "method": method,
        "seed": seed,
        "sparsity": k,
        "oneshot_test_accuracy": acc - 0.1,
        "finetuned_test_accuracy": acc,
        "export_bytes": size,
        "export_size_ratio": size / 1000,
        **extra,
    }


def timing(method, seed, k, latency, dense=2.0, throughput=1000.0):
    return {
        "method": method,
        "seed": seed,
        "sparsity": k,
        "export_latency_b1_ms": latency,
        "dense_latency_b1_ms": dense,
        "export_throughput_ips": throughput,
        "dense_throughput_ips": 500.0,
        "speedup_b1": dense / latency,
        "speedup_eval": throughput / 500.0,
        "threads": 2,
    }


def test_points_join_their_timings_and_a_missing_one_is_named():
    points = [point("weight", 0, 0.5, 0.9, 600), point("weight", 0, 0.9, 0.8, 200)]
    rows = report.join(points, [timing("weight", 0, 0.9, 1.0), timing("weight", 0, 0.5, 2.0)])
    assert [(r["sparsity"], r["export_latency_b1_ms"]) for r in rows] == [(0.5, 2.0), (0.9, 1.0)]
    with pytest.raises(PrunelabError, match=r"no timings for sweep points \[\('weight', 0, 0.9\)\]"):
        report.join(points, [timing("weight", 0, 0.5, 2.0)])


def test_curves_average_seeds_and_give_both_regimes_the_measured_export():
    rows = report.join(
        [point("weight", 0, 0.9, 0.8, 200), point("weight", 1, 0.9, 0.9, 300)],
        [timing("weight", 0, 0.9, 1.0), timing("weight", 1, 0.9, 3.0, throughput=250.0)],
    )
    curves = report.curves(rows)
    assert [(c["regime"], c["seeds"]) for c in curves] == [("oneshot", 2), ("finetuned", 2)]
    tuned = curves[1]
    assert tuned["accuracy"] == pytest.approx(0.85) and tuned["accuracy_std"] == pytest.approx(0.0707, abs=1e-4)
    assert tuned["latency_b1_ms"] == 2.0 and tuned["latency_b1_ms_std"] == pytest.approx(2**0.5)
    assert tuned["us_per_image"] == pytest.approx((1000 + 4000) / 2)  # 1e6 / throughput, averaged
    assert tuned["export_mib"] == pytest.approx(250 / 2**20) and tuned["export_size_ratio"] == 0.25
    assert curves[0]["latency_b1_ms"] == tuned["latency_b1_ms"]  # same mask, same export
    assert set(curves[0]) == set(report.EFFICIENCY_CURVE_COLUMNS)


def test_summary_reports_what_is_bought_where_accuracy_holds():
    rows = report.join(
        [point("unit", 0, 0.5, 0.95, 500), point("unit", 0, 0.9, 0.5, 100)],
        [timing("unit", 0, 0.5, 1.0), timing("unit", 0, 0.9, 0.5)],
    )
    out = report.summary(rows, baseline_accuracy=0.95, tolerance=0.01)
    assert out["unit"]["finetuned_holds_until"] == 0.5
    assert out["unit"]["finetuned_export_size_ratio"] == 0.5 and out["unit"]["finetuned_speedup_b1"] == 2.0
    # one-shot is 0.85 at every k: it never holds, so nothing is bought there
    assert out["unit"]["oneshot_holds_until"] == -1.0 and "oneshot_speedup_b1" not in out["unit"]


def test_timings_taken_under_load_claim_no_speed_and_are_drawn_hollow():
    """Seed 1 was timed on a busy machine (noisy): its 10x is left out of every speed figure."""
    points = [point("unit", s, 0.5, 0.95, 500) for s in (0, 1)]
    rows = report.join(points, [timing("unit", 0, 0.5, 1.0), timing("unit", 1, 0.5, 0.2) | {"noisy": True}])
    out = report.summary(rows, baseline_accuracy=0.95, tolerance=0.01)["unit"]
    assert out["finetuned_speedup_b1"] == 2.0 and "finetuned_noisy_timing" not in out
    tuned = report.curves(rows)[1]
    assert tuned["latency_b1_ms"] == 1.0 and tuned["speedup_b1"] == 2.0 and tuned["noisy_timing"] == 0
    # every seed under load: the point still has a place on the curve, hollow, and the summary claims no speed
    rows = [r | {"noisy": True} for r in rows]
    out = report.summary(rows, baseline_accuracy=0.95, tolerance=0.01)["unit"]
    assert "finetuned_speedup_b1" not in out and out["finetuned_noisy_timing"] is True
    assert out["finetuned_export_size_ratio"] == 0.5  # a count: load does not touch it
    assert report.curves(rows)[1]["noisy_timing"] == 1


def test_stale_or_missing_timings_are_refused(tmp_path):
    with pytest.raises(PrunelabError, match=r"missing.*sweep@weight-0"):
        report.load_timings(tmp_path / "none.json", "weight", 0, [0.5])
    stale = tmp_path / "t.json"
    stale.write_text('{"points": [{"method": "weight", "seed": 0, "sparsity": 0.5}]}')
    with pytest.raises(PrunelabError, match="stale"):
        report.load_timings(stale, "weight", 0, [0.5, 0.9])


def test_an_export_folder_must_hold_exactly_one_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = paths.FINETUNED_EXPORT
    with pytest.raises(PrunelabError, match=r"holds no export.*dvc repro -f finetune"):
        exports.find_export(folder)
    folder.mkdir(parents=True)
    (folder / "model.pt2").write_bytes(b"x")
    assert exports.find_export(folder) == folder / "model.pt2"
    (folder / "model.sparse").write_bytes(b"x")
    with pytest.raises(PrunelabError, match="holds 2 exports"):
        exports.find_export(folder)


def test_a_bad_timing_choice_is_refused(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="timing='slow'"):
        exports.write_export(tiny_model, (1, 8, 8), tmp_path / "m", timing="slow")


def test_a_sweep_point_is_measured_from_real_files_and_leaves_nothing_behind(
    tiny_model, tiny_model_cfg, tmp_path, monkeypatch
):
    import copy
    import tempfile
    from types import SimpleNamespace

    from prunelab.pruning import METHODS
    from prunelab.pruning.masks import make_permanent

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    paths.baseline_export(0).parent.mkdir(parents=True)
    paths.baseline_export(0).write_bytes(b"d" * 100_000)  # the dense file the size ratio is against
    base = SimpleNamespace(model=tiny_model, model_cfg=tiny_model_cfg, input_shape=(1, 8, 8), num_classes=10)
    dense = copy.deepcopy(tiny_model.state_dict())
    model = copy.deepcopy(tiny_model)
    pruned = METHODS.get("weight").prune(model, configure(method="weight", sparsity=0.9), (1, 8, 8))
    make_permanent(model)
    measure = exports.SweepMeasure(base, 0, "cpu")
    cost = measure(model, pruned.masks, None, {"method": "weight", "seed": 0, "sparsity": 0.9})
    assert cost["export_size_ratio"] == cost["export_bytes"] / 100_000
    assert 0 < cost["export_bytes"] < cost["checkpoint_bytes"] and cost["flops_ideal"] < cost["flops_dense"]
    assert measure.timings[0]["sparsity"] == 0.9 and measure.timings[0]["speedup_b1"] > 0
    assert list((tmp_path / "tmp").iterdir()) == []  # the point's checkpoint and export are gone
    # the dense model it was timed against is untouched, and back in the mode it was in
    assert all(torch.equal(v, dense[k]) for k, v in tiny_model.state_dict().items()) and tiny_model.training


def test_the_timing_mode_comes_from_the_environment_and_a_bad_one_is_one_line_naming_it(monkeypatch):
    monkeypatch.delenv(policies.TIMING_ENV, raising=False)
    assert policies.timing_mode() == "full" and policies.active_policy() is policies.STAGE
    assert policies.active_policy("kernels") is policies.KERNELS
    monkeypatch.setenv(policies.TIMING_ENV, "quick")
    assert policies.timing_mode() == "quick" and policies.active_policy() is policies.QUICK
    assert policies.active_policy("kernels") is policies.QUICK_KERNELS
    monkeypatch.setenv(policies.TIMING_ENV, "fast")
    with pytest.raises(PrunelabError) as error:
        policies.active_policy()
    assert str(error.value) == "PRUNELAB_TIMING='fast': expected one of full, quick"


def test_each_preset_is_what_the_timing_table_says_and_quick_is_never_slower():
    """The presets' numbers are the ones measure/timing.py's table gives each caller (so the table
    a reader goes by is true), and PRUNELAB_TIMING=quick is fewer, shorter rounds for every use."""
    row = re.compile(r"^``(\w+)``\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+|none)\s")
    table = {
        m[1]: policies.TimingPolicy(int(m[2]), int(m[3]), float(m[4]), None if m[5] == "none" else float(m[5]))
        for m in map(row.match, policies.__doc__.splitlines())
        if m
    }
    presets = {name: value for name, value in vars(policies).items() if isinstance(value, policies.TimingPolicy)}
    assert table == presets
    full, quick = policies.MODES["full"], policies.MODES["quick"]
    assert full.keys() == quick.keys()
    for use in full:
        f, q = full[use], quick[use]
        assert q != f and q.rounds <= f.rounds and q.warmup <= f.warmup and q.min_sample_s <= f.min_sample_s
        assert q.max_s is not None and f.max_s is not None and q.max_s <= f.max_s
    with pytest.raises(FrozenInstanceError):
        policies.STAGE.rounds = 3


def test_every_caller_times_with_its_preset(tiny_model, monkeypatch):
    import inspect

    from prunelab.export import kernels, quick_timer
    from prunelab.measure import Subject, latency, speed

    assert inspect.signature(exports.SweepMeasure).parameters["timing"].default is policies.SWEEP_POINT
    assert Subject(tiny_model).timing is policies.STAGE
    assert inspect.signature(latency.compare_latency).parameters["policy"].default is policies.DEFAULT
    calls = []

    def record(runs, **kwargs):
        calls.append({k: kwargs[k] for k in ("rounds", "warmup", "min_sample_s", "max_s") if k in kwargs})
        return {name: policies.Timing((1.0,), kwargs.get("batch", 1)) for name in runs}

    monkeypatch.setattr(policies, "interleaved", record)  # what the export's timers call
    monkeypatch.setattr(latency, "interleaved", record)  # what compare_latency calls
    run = {"dense": lambda: None}

    def numbers(policy):
        return policy.interleaved_args()

    kernels.default_timer(torch.device("cpu"))("layer", 1, run)
    quick_timer("cpu")("layer", 1, run)
    monkeypatch.delenv(policies.TIMING_ENV, raising=False)
    exports.kernel_timer("cpu")("layer", 1, run)
    monkeypatch.setenv(policies.TIMING_ENV, "quick")
    exports.kernel_timer("cpu")("layer", 1, run)
    latency.compare_latency({"m": tiny_model}, (1, 8, 8), 1, policy=policies.SWEEP_POINT)
    assert calls == [
        numbers(policies.KERNELS),
        numbers(policies.QUICK_KERNELS),
        numbers(policies.KERNELS),
        numbers(policies.QUICK_KERNELS),
        numbers(policies.SWEEP_POINT),
    ]

    # the stages' measure: the active preset for comparisons
    seen = []
    monkeypatch.setattr(
        speed,
        "compare_latency",
        lambda modules, shape, batch, *, device, policy: (
            seen.append(policy) or {name: policies.Timing((1.0,), batch) for name in modules}
        ),
    )
    exports.measure(tiny_model, (1, 8, 8))
    monkeypatch.delenv(policies.TIMING_ENV)
    exports.measure(tiny_model, (1, 8, 8))
    assert seen == [policies.QUICK, policies.QUICK, policies.STAGE, policies.STAGE]
