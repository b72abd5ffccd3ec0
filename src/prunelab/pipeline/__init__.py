"""The pipeline: one module per DVC stage's work, the stage runner, params checked against the plug-ins."""
