"""Tracking in MLflow: the only package that imports mlflow (see ``runs.py``)."""

from prunelab.track.runs import (
    DEFAULT_EXPERIMENT, EXPERIMENT_TAGS, HOST_TAG, PID_TAG, STARTED_TAG, START_HTTP, TrackingError, describe_failure,
    experiment_name, file_digest, flatten, git_commit, init_store, log_artifacts, log_child, log_curves, log_dataset,
    log_history, log_metrics, log_model, log_table, process_tags, reap_dead_runs, run_tags, search_runs, start_run,
    store_errors, tracking_uri,
)

__all__ = [
    "DEFAULT_EXPERIMENT", "EXPERIMENT_TAGS", "HOST_TAG", "PID_TAG", "STARTED_TAG", "START_HTTP", "TrackingError",
    "describe_failure", "experiment_name", "file_digest", "flatten", "git_commit", "init_store", "log_artifacts",
    "log_child", "log_curves", "log_dataset", "log_history", "log_metrics", "log_model", "log_table", "process_tags",
    "reap_dead_runs", "run_tags", "search_runs", "start_run", "store_errors", "tracking_uri",
]
