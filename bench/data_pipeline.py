"""Image-folder data pipeline: is the second epoch's data time small next to its training steps?

Generates ``--images`` PNG photos-like images (``--source-size`` px, several sizes of
coloured shapes on noise, 10 classes) in a temporary ImageFolder layout, prepares them
with the real ``imagefolder`` loader (decoded and resized once to ``--size``), then
trains the small CNN (``cifar_cnn``) for 2 epochs with ``data.augment`` on, batch 128.
``fit`` reports per epoch the data time (slicing, uint8→float, random crop + flip on
whole batches) and the step time (forward, backward, optimiser). Goal: in epoch 2,
data time < 10 % of step time. The one-off decode time is reported too.

Usage: uv run python bench/data_pipeline.py [--images N] [--size S] [--check]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine_load import MachineLoad  # bench/ is on sys.path: it is the script's folder
from PIL import Image

from prunelab.config import DataConfig, ModelConfig, TrainConfig
from prunelab.data import DATASETS
from prunelab.models import build_for
from prunelab.seeding import seed_everything
from prunelab.train.fit import fit

GOAL = 0.10
OUT = Path(__file__).resolve().parent / "out" / "data_pipeline.json"


def make_folder(root: Path, n: int, size: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        label = i % classes
        img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        y, x = rng.integers(0, size // 2, 2)
        img[y : y + size // 3, x : x + size // 3, label % 3] = 200 + 5 * label  # a class-coloured block
        folder = root / f"class_{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"img_{i:05d}.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--source-size", type=int, default=96)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--check", action="store_true", help="exit 1 if the goal is missed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_folder(Path(tmp), args.images, args.source_size)
        generated = time.perf_counter() - t0
        cfg = DataConfig(name="imagefolder", root=tmp, image_size=args.size, augment=True)
        t0 = time.perf_counter()
        spec = DATASETS.get("imagefolder")(cfg, 0)
        decoded = time.perf_counter() - t0
    seed_everything(0)
    model = build_for(ModelConfig(name="cifar_cnn"), spec)
    with MachineLoad() as load:
        result = fit(
            model,
            spec,
            TrainConfig(epochs=2, batch_size=128),
            seed=0,
            device=torch.device("cpu"),
            augment=True,
            desc="cifar_cnn, augment",
        )
    second = result.history[1]
    ratio = second["data_time"] / second["step_time"]
    print(
        f"{args.images} images {args.source_size}px generated in {generated:.1f} s, decoded + resized to "
        f"{args.size}px once in {decoded:.1f} s ({args.images / decoded:.0f} img/s)"
    )
    print(
        f"epoch 2: data {second['data_time']:.3f} s, steps {second['step_time']:.3f} s, "
        f"ratio {ratio:.4f} (goal < {GOAL})  {'OK' if ratio < GOAL else 'MISSED'}"
    )
    print(f"while timing, {load.describe()}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "images": args.images,
                "source_size": args.source_size,
                "size": args.size,
                "decode_s": decoded,
                "epoch2_data_s": second["data_time"],
                "epoch2_step_s": second["step_time"],
                "ratio": ratio,
                "goal": GOAL,
                "other_cores": load.other_cores,
                "steal_cores": load.steal_cores,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
            },
            indent=2,
        )
        + "\n"
    )
    return 1 if args.check and ratio >= GOAL else 0


if __name__ == "__main__":
    sys.exit(main())
