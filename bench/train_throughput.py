"""Training throughput: prunelab's training loop against a bare PyTorch loop, side by side.

Both sides train the same model (``build_for`` on the default ModelConfig: the mlp with
its Standardize layer), on the same mnist-5k train split, batch size 128, Adam lr 1e-3,
in this process. "ours" is the real code path: ``prunelab.train.fit.fit``, progress bar
and all, on the DataSpec as the loader returns it, except with an empty validation split
(the bare loop validates nothing either). "bare" is the minimal loop: float images
precomputed in [0, 1], randperm, forward, cross_entropy, zero_grad, backward, Adam step.

A timed run is ``--epochs`` epochs (default 2: the sweep's fine-tuning length, so the
most common fit in the pipeline), fit's per-call set-up included. Every run starts from
the same initial weights, a fresh optimizer and the same shuffling seed, so both sides
do identical arithmetic (their final weights are compared as a check). Sides alternate
order each round so drift (thermal, other load) hits both.

Usage: uv run python bench/train_throughput.py [--rounds N] [--epochs N] [--check]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from machine_load import MachineLoad  # bench/ is on sys.path: it is the script's folder
from torch import nn

from prunelab.config import DataConfig, ModelConfig, TrainConfig
from prunelab.data import DATASETS, DataSpec
from prunelab.data.spec import Split
from prunelab.models import build_for
from prunelab.seeding import seed_everything
from prunelab.train.fit import fit

GOAL_RATIO = 0.95
SEED = 0
OUT = Path(__file__).resolve().parent / "out" / "train_throughput.json"


def without_validation(spec: DataSpec) -> DataSpec:
    val = spec.val
    return dataclasses.replace(spec, val=Split(val.images[:0], val.labels[:0]))


def bare_fit(model: nn.Module, cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, epochs: int) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        order = torch.randperm(labels.shape[0], generator=rng)
        for start in range(0, labels.shape[0], cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def timed(train: Callable[[nn.Module], None], template: nn.Module) -> tuple[float, nn.Module]:
    """Wall seconds of one training run, and the trained model."""
    model = copy.deepcopy(template)  # built outside the timed region: it is not loop cost
    start = time.perf_counter()
    train(model)
    return time.perf_counter() - start, model


@torch.no_grad()
def max_weight_diff(a: nn.Module, b: nn.Module) -> float:
    return max(float((pa - pb).abs().max()) for pa, pb in zip(a.parameters(), b.parameters()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds, one run per side each (default 10)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed run (default 2)")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if ours/bare < {GOAL_RATIO}")
    args = parser.parse_args()

    # As every training stage does: seeded, deterministic kernels. Global, so both sides get it.
    seed_everything(SEED)
    cfg = TrainConfig(epochs=args.epochs)
    spec = DATASETS.get(DataConfig().name)(DataConfig(), SEED)
    ours_data = without_validation(spec)
    images, labels = spec.train.images.float().div(255.0), spec.train.labels  # bare: precomputed floats
    template = build_for(ModelConfig(), spec)
    n = int(labels.shape[0])
    cpu = torch.device("cpu")

    sides: dict[str, Callable[[nn.Module], None]] = {
        "ours": lambda m: fit(m, ours_data, cfg, seed=SEED, device=cpu, desc="ours", leave=False),
        "bare": lambda m: bare_fit(m, cfg, images, labels, args.epochs),
    }
    for run in sides.values():  # warm-up: allocator, kernels, lazy imports
        timed(run, template)

    times: dict[str, list[float]] = {name: [] for name in sides}
    finals: dict[str, nn.Module] = {}
    with MachineLoad() as load:
        for r in range(args.rounds):
            for name in ("ours", "bare") if r % 2 == 0 else ("bare", "ours"):
                seconds, finals[name] = timed(sides[name], template)
                times[name].append(seconds)

    rate = {name: n * args.epochs / statistics.median(ts) for name, ts in times.items()}
    ratio = rate["ours"] / rate["bare"]
    met = ratio >= GOAL_RATIO
    # Each round's two runs were back to back; the spread of their ratios shows how much
    # of any gap is noise (other load on the cores) rather than the loop.
    paired = [b / o for o, b in zip(times["ours"], times["bare"])]
    diff = max_weight_diff(finals["ours"], finals["bare"])

    print(
        f"\ntraining throughput: mlp {'-'.join(map(str, (784, *ModelConfig().hidden, 10)))}, "
        f"{spec.name} train split ({n} samples, {-(-n // cfg.batch_size)} batches of {cfg.batch_size}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.rounds} rounds of {args.epochs} epochs per side"
    )
    print(f"{'side':<6} {'median s/run':>13} {'min s':>8} {'max s':>8} {'samples/s':>11}")
    for name, ts in times.items():
        print(f"{name:<6} {statistics.median(ts):>13.3f} {min(ts):>8.3f} {max(ts):>8.3f} {rate[name]:>11.0f}")
    print(f"ratio ours/bare: {ratio:.3f}  (goal >= {GOAL_RATIO}: {'met' if met else 'NOT met'})")
    print(f"per-round ratios: median {statistics.median(paired):.3f}, range {min(paired):.3f}-{max(paired):.3f}")
    print(f"while timing, {load.describe()}")
    print(f"same arithmetic check: max |weight difference| after a run = {diff:.3g}")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "model": "mlp",
                "hidden": list(ModelConfig().hidden),
                "dataset": spec.name,
                "train_samples": n,
                "batch_size": cfg.batch_size,
                "rounds": args.rounds,
                "epochs_per_run": args.epochs,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "threads": torch.get_num_threads(),
                "run_seconds": times,
                "samples_per_s_median": rate,
                "ratio": ratio,
                "goal_ratio": GOAL_RATIO,
                "goal_met": met,
                "paired_ratios": paired,
                "other_cores": load.other_cores,
                "steal_cores": load.steal_cores,
                "max_weight_diff": diff,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {OUT}")
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
