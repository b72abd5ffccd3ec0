import pytest

from prunelab import atomic
from prunelab.errors import PrunelabError
from prunelab.report.curves import holds_until, mean_std
from prunelab.report.sweep import curves, load_sweep, summary

POINTS = [
    {
        "sparsity": 0.0,
        "nonzero_params": 1000,
        "oneshot_test_accuracy": 0.95,
        "oneshot_test_loss": 0.2,
        "finetuned_test_accuracy": 0.96,
        "finetuned_test_loss": 0.1,
    },
    {
        "sparsity": 0.5,
        "nonzero_params": 500,
        "oneshot_test_accuracy": 0.945,
        "oneshot_test_loss": 0.3,
        "finetuned_test_accuracy": 0.95,
        "finetuned_test_loss": 0.2,
    },
    {
        "sparsity": 0.9,
        "nonzero_params": 100,
        "oneshot_test_accuracy": 0.5,
        "oneshot_test_loss": 2.0,
        "finetuned_test_accuracy": 0.941,
        "finetuned_test_loss": 0.3,
    },
]


def test_holds_until_is_the_last_point_of_the_unbroken_run():
    assert holds_until(POINTS, "oneshot_test_accuracy", 0.95, 0.01) == 0.5
    assert holds_until(POINTS, "finetuned_test_accuracy", 0.95, 0.01) == 0.9
    assert holds_until(POINTS, "oneshot_test_accuracy", 0.99, 0.01) is None


def test_summary_and_curves():
    result = summary({"weight": POINTS}, [0.95], 0.01)
    assert result["weight"]["oneshot_holds_until"] == 0.5
    assert result["weight"]["finetuned_accuracy_at_max_sparsity"] == 0.941
    assert result["baseline_test_accuracy_std"] == 0.0 and result["seeds"] == 1
    rows = curves({"weight": POINTS})
    assert len(rows) == 6 and {r["series"] for r in rows} == {"weight, one-shot", "weight, fine-tuned"}
    assert {r["seeds"] for r in rows} == {1} and {r["accuracy_std"] for r in rows} == {0.0}


def seeded(points, seed, shift):
    return [{**p, "seed": seed, **{k: v + shift for k, v in p.items() if k.endswith("_accuracy")}} for p in points]


def test_with_several_seeds_curves_are_means_with_the_sample_spread():
    points = seeded(POINTS, 0, -0.01) + seeded(POINTS, 1, 0.01)
    rows = {(r["regime"], r["sparsity"]): r for r in curves({"weight": points})}
    one = rows[("finetuned", 0.9)]
    assert one["accuracy"] == pytest.approx(0.941) and one["seeds"] == 2
    assert one["accuracy_std"] == pytest.approx(0.02 / 2**0.5)  # sample std (ddof 1) of ±0.01
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0) and mean_std([5.0]) == (5.0, 0.0)


def test_holds_until_is_read_on_the_mean_over_seeds_and_reports_the_spread_there():
    # seed 1 alone would break at 0.5 (0.93 < 0.95 - 0.01); the mean (0.945) holds
    points = [
        {"seed": 0, "sparsity": k, "oneshot_test_accuracy": a} for k, a in ((0.0, 0.96), (0.5, 0.96), (0.9, 0.5))
    ] + [{"seed": 1, "sparsity": k, "oneshot_test_accuracy": a} for k, a in ((0.0, 0.94), (0.5, 0.93), (0.9, 0.6))]
    assert holds_until(points, "oneshot_test_accuracy", 0.95, 0.01) == 0.5
    result = summary({"weight": points}, [0.94, 0.96], 0.01)
    assert result["baseline_test_accuracy"] == pytest.approx(0.95) and result["seeds"] == 2
    assert result["weight"]["oneshot_holds_until"] == 0.5
    assert result["weight"]["oneshot_accuracy_std_at_holds_until"] == pytest.approx(0.03 / 2**0.5)
    assert result["weight"]["oneshot_accuracy_at_max_sparsity"] == pytest.approx(0.55)


def test_stale_or_missing_sweep_results_are_refused(tmp_path):
    path = tmp_path / "weight.json"
    with pytest.raises(PrunelabError, match="missing"):
        load_sweep(path, "weight", [0.0, 0.5])
    atomic.write_json(path, {"method": "weight", "points": POINTS})
    assert load_sweep(path, "weight", [0.9, 0.0, 0.5]) == POINTS
    with pytest.raises(PrunelabError, match="stale"):
        load_sweep(path, "weight", [0.0, 0.5])


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = atomic.write_text(tmp_path / "out.txt", "old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic.write_with(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_csv_quotes_values_with_commas(tmp_path):
    import csv

    rows = [{"series": "weight, one-shot", "sparsity": 0.5, "loss": None}]
    path = atomic.write_csv(tmp_path / "c.csv", rows, ["series", "sparsity", "loss"])
    with open(path) as fh:
        assert list(csv.DictReader(fh)) == [{"series": "weight, one-shot", "sparsity": "0.5", "loss": ""}]
