"""prunelab: reproducible pruning studies.

No network from this project: MLflow's telemetry is off before any module of the package
can import mlflow (only ``track/`` does), whoever imports prunelab first.
"""

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
