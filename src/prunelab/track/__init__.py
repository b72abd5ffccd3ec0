"""Tracking in MLflow: the only package that imports mlflow.

``store`` (where the store is, creating it once, its failures as one line), ``reap`` (which
process owns a run, and KILLED for the runs of dead ones), ``runs`` (a stage's run and what
it logs), ``compare`` (one table across experiments, a command).
"""

from prunelab.track.reap import HOST_TAG, PID_TAG, STARTED_TAG, process_tags, reap_dead_runs
from prunelab.track.runs import (
    file_digest,
    flatten,
    git_commit,
    log_artifacts,
    log_child,
    log_curves,
    log_dataset,
    log_history,
    log_metrics,
    log_model,
    log_table,
    run_tags,
    search_runs,
    start_run,
)
from prunelab.track.store import (
    DEFAULT_EXPERIMENT,
    EXPERIMENT_TAGS,
    START_HTTP,
    TrackingError,
    describe_failure,
    experiment_name,
    init_store,
    store_errors,
    tracking_uri,
)

__all__ = [
    "DEFAULT_EXPERIMENT",
    "EXPERIMENT_TAGS",
    "HOST_TAG",
    "PID_TAG",
    "STARTED_TAG",
    "START_HTTP",
    "TrackingError",
    "describe_failure",
    "experiment_name",
    "file_digest",
    "flatten",
    "git_commit",
    "init_store",
    "log_artifacts",
    "log_child",
    "log_curves",
    "log_dataset",
    "log_history",
    "log_metrics",
    "log_model",
    "log_table",
    "process_tags",
    "reap_dead_runs",
    "run_tags",
    "search_runs",
    "start_run",
    "store_errors",
    "tracking_uri",
]
