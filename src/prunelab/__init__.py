"""prunelab: reproducible pruning studies."""
