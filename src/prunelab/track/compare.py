"""One table across experiments, from the MLflow store: `uv run python -m prunelab.track.compare`.

    uv run python -m prunelab.track.compare                     # every DVC experiment, one row each
    uv run python -m prunelab.track.compare r1 r2-mnist         # just these (names as `dvc exp show` lists them)
    uv run python -m prunelab.track.compare --points            # one row per sweep point of each experiment
    uv run python -m prunelab.track.compare --out reports/cmp   # writes reports/cmp.csv and reports/cmp.md

A row is an experiment's latest finished run of the stage that holds its headline numbers
(``evaluate``; with ``--points``, the sweep's point runs). ``workspace`` is a plain
`dvc repro`. Runs come from the store MLflow uses (``MLFLOW_TRACKING_URI``, else
``mlruns/mlflow.db``); an experiment restored from DVC's cache logged nothing new.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from prunelab import atomic
from prunelab.errors import PrunelabError

# (column, where MLflow keeps it): the numbers people compare, in reading order
EXPERIMENT_COLUMNS = [
    ("experiment", "tags.dvc_exp"),
    ("dataset", "tags.dataset"),
    ("model", "tags.model"),
    ("method", "tags.method"),
    ("sparsity", "tags.sparsity"),
    ("test_accuracy", "metrics.test_accuracy"),
    ("oneshot_test_accuracy", "metrics.oneshot_test_accuracy"),
    ("baseline_test_accuracy", "metrics.baseline_test_accuracy"),
    ("accuracy_drop", "metrics.accuracy_drop"),
    ("sparsity_prunable", "metrics.sparsity_prunable"),
    ("params", "metrics.params"),
    ("nonzero_params", "metrics.nonzero_params"),
    ("compression_ratio", "metrics.compression_ratio"),
    ("param_reduction", "metrics.param_reduction"),
    ("finished", "end_time"),
]
POINT_COLUMNS = [
    ("experiment", "tags.dvc_exp"),
    ("dataset", "tags.dataset"),
    ("model", "tags.model"),
    ("method", "tags.method"),
    ("seed", "tags.seed"),
    ("sparsity", "metrics.sparsity"),
    ("oneshot_test_accuracy", "metrics.oneshot_test_accuracy"),
    ("finetuned_test_accuracy", "metrics.finetuned_test_accuracy"),
    ("sparsity_prunable", "metrics.sparsity_prunable"),
    ("nonzero_params", "metrics.nonzero_params"),
    ("param_reduction", "metrics.param_reduction"),
    ("finished", "end_time"),
]


def table(runs: pd.DataFrame | None, experiments: Sequence[str] = (), points: bool = False) -> pd.DataFrame:
    """The comparison table from ``track.search_runs()``'s frame; errors say what exists and what to do."""
    if runs is None or runs.empty or "tags.stage" not in runs:
        raise PrunelabError(
            "the MLflow store has no prunelab runs yet: run `uv run dvc repro` (or `uv run dvc exp run ...`) first"
        )
    runs = runs[runs["status"] == "FINISHED"]
    known = sorted(set(runs["tags.dvc_exp"].dropna()))
    if unknown := [e for e in experiments if e not in known]:
        raise PrunelabError(
            f"no DVC experiment named {', '.join(map(repr, unknown))} in the MLflow store; known: {', '.join(known)}"
        )
    if experiments:
        runs = runs[runs["tags.dvc_exp"].isin(experiments)]
    if points:
        runs = runs[(runs["tags.stage"] == "sweep") & runs.get("metrics.sparsity", pd.Series(dtype=float)).notna()]
        if "tags.seed" not in runs:  # runs logged before sweeps had seeds
            runs = runs.assign(**{"tags.seed": None})
        columns, key = POINT_COLUMNS, ["tags.dvc_exp", "tags.method", "tags.seed", "metrics.sparsity"]
    else:
        runs = runs[runs["tags.stage"] == "evaluate"]
        columns, key = EXPERIMENT_COLUMNS, ["tags.dvc_exp"]
    if runs.empty:
        what = "sweep points" if points else "evaluate runs"
        raise PrunelabError(
            f"no finished {what} for {', '.join(experiments) or 'any experiment'}: "
            "run `uv run dvc repro` (the stages that log them)"
        )
    latest = runs.sort_values("end_time", ascending=False).drop_duplicates(key)  # reruns: the newest counts
    out = pd.DataFrame({name: latest[source] if source in latest else None for name, source in columns})
    for count in ("params", "nonzero_params"):  # counts read as counts, not 2.386e+06
        if count in out:
            out[count] = out[count].astype("Int64")
    return out.sort_values([c for c in ("experiment", "method", "seed", "sparsity") if c in out]).reset_index(drop=True)


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (numbers to 4 significant digits)."""

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in frame.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m prunelab.track.compare",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("experiments", nargs="*", help="DVC experiment names (default: all); 'workspace' is dvc repro")
    parser.add_argument("--points", action="store_true", help="one row per sweep point instead of per experiment")
    parser.add_argument("--out", default="reports/compare", help="write OUT.csv and OUT.md (default: %(default)s)")
    args = parser.parse_args(argv)

    from prunelab import track

    frame = table(track.search_runs(), args.experiments, args.points)
    frame["finished"] = pd.to_datetime(frame["finished"]).dt.strftime("%Y-%m-%d %H:%M")
    with pd.option_context("display.max_columns", None, "display.width", 250, "display.float_format", "{:.4g}".format):
        print(frame.to_string(index=False))
    out = Path(args.out)
    atomic.write_with(out.with_suffix(".csv"), lambda tmp: frame.to_csv(tmp, index=False))
    atomic.write_text(out.with_suffix(".md"), markdown(frame))
    print(f"\nwrote {out.with_suffix('.csv')} and {out.with_suffix('.md')} ({len(frame)} rows)")


if __name__ == "__main__":
    from prunelab import cli

    cli.run(main)
