"""Stratified, seeded splits: every class keeps its proportion in every part."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, fractions: list[float], seed: int) -> list[np.ndarray]:
    """Split indices into ``len(fractions) + 1`` disjoint parts.

    ``fractions`` are the sizes of the trailing parts (e.g. [val, test]); the first part
    gets the rest. Within each class the indices are shuffled with ``seed`` and cut at
    rounded boundaries, so parts are disjoint, cover everything, and are identical for
    the same labels and seed. Returned indices are sorted.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n = len(idx)
        sizes = [round(f * n) for f in fractions]
        start = n - sum(sizes)
        parts[0].append(idx[:start])
        for i, size in enumerate(sizes, start=1):
            parts[i].append(idx[start : start + size])
            start += size
    return [np.sort(np.concatenate(p)) if p else np.empty(0, dtype=np.int64) for p in parts]
