"""How long each reference study (prunelab.pipeline.studies) takes: measured steps, counted work.

For each study the model is built exactly as its params say (random weights; pretrained
weights would not change the speed) and timed on random inputs of the dataset's shape:
``--steps`` training steps (forward, loss, backward, Adam) and as many evaluation passes,
at the study's batch sizes, after one warm-up step. The study's whole run is then the
number of training steps (baseline epochs, fine-tuning epochs as an upper bound, every
sweep point's fine-tuning) times the step time, plus the evaluation passes (validation
each epoch, test sets of every sweep point). Data loading is not included: it is under
1 % of an epoch (bench/data_pipeline.py). Decoding RealWaste once is not included.

With CUDA present each study is timed on the GPU too. Without it the GPU column is an
estimate, and printed as one: training FLOPs (3x the forward FLOPs counted by
torch.utils.flop_counter) at ``--gpu-tflops`` sustained, with at least ``--gpu-step-ms``
per step for launch overhead.

Usage: uv run python bench/study_times.py [--steps N] [--only r3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import torch
import torch.nn.functional as F

from prunelab import config, paths
from prunelab.data import data_config
from prunelab.models import MODELS, model_config
from prunelab.pipeline import studies
from prunelab.pruning import sweep_config

# Train/val/test sizes as prunelab splits them, and the input shape, per dataset.
DATASETS = {
    "mnist": {"train": 54_000, "val": 6_000, "test": 10_000, "shape": (1, 28, 28), "classes": 10},
    "cifar10": {"train": 45_000, "val": 5_000, "test": 10_000, "shape": (3, 32, 32), "classes": 10},
    # 4,752 photos: 20 % test, then 10 % of the rest for validation
    "realwaste": {"train": 3_421, "val": 380, "test": 951, "shape": (3, None, None), "classes": 9},
}


def workload(params: dict) -> dict:
    data, train = data_config(params), config.section(params, config.TrainConfig)
    tune, sweep = config.section(params, config.FinetuneConfig), sweep_config(params)
    d = DATASETS[data.name]
    shape = (d["shape"][0], d["shape"][1] or data.image_size, d["shape"][2] or data.image_size)
    seeds = len(sweep.seeds)  # a baseline and a sweep per seed; prune → finetune → evaluate once
    points = len(sweep.methods) * len(sweep.sparsities) * seeds
    steps = seeds * train.epochs * math.ceil(d["train"] / train.batch_size) + (
        tune.epochs + points * sweep.finetune_epochs
    ) * math.ceil(d["train"] / tune.batch_size)
    epochs = seeds * train.epochs + tune.epochs + points * sweep.finetune_epochs
    eval_images = epochs * d["val"] + (2 * points + 3 + seeds) * d["test"]  # one-shot and fine-tuned test per point
    return {
        "shape": shape,
        "classes": d["classes"],
        "train_steps": steps,
        "eval_images": eval_images,
        "batch": train.batch_size,
        "epochs": epochs,
    }


def time_model(model, shape, classes, batch, steps, device) -> tuple[float, float]:
    """Seconds per training step at ``batch`` and per evaluated image."""
    model = model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, *shape, device=device)
    y = torch.randint(0, classes, (batch,), device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    train_step = (time.perf_counter() - start) / steps
    model.eval()
    with torch.inference_mode():
        model(x)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        sync()
    return train_step, (time.perf_counter() - start) / steps / batch


def forward_flops(model, shape) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    return float(counter.get_total_flops())


def hms(seconds: float) -> str:
    m = round(seconds / 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{max(m, 1)} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=list(studies.STUDIES))
    parser.add_argument("--gpu-tflops", type=float, default=15.0)
    parser.add_argument("--gpu-step-ms", type=float, default=5.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    base = config.load_params(paths.PARAMS)
    rows = []
    for name in args.only:
        params = studies.apply(base, studies.STUDIES[name].overrides)
        w = workload(params)
        model_cfg = model_config(params)
        torch.manual_seed(0)
        model = MODELS.get(model_cfg.name)(
            config.ModelConfig(**{**model_cfg.as_dict(), "pretrained": False}), w["shape"], w["classes"]
        )
        flops = forward_flops(model, w["shape"])
        row = {
            "study": name,
            "shape": list(w["shape"]),
            "train_steps": w["train_steps"],
            "epochs": w["epochs"],
            "forward_gflops_per_image": flops / 1e9,
        }
        step, per_image = time_model(model, w["shape"], w["classes"], w["batch"], args.steps, torch.device("cpu"))
        row["cpu_step_s"] = step
        row["cpu_total_s"] = w["train_steps"] * step + w["eval_images"] * per_image
        if torch.cuda.is_available():
            gstep, gimage = time_model(
                model, w["shape"], w["classes"], w["batch"], args.steps * 10, torch.device("cuda")
            )
            row.update(
                gpu_step_s=gstep,
                gpu_total_s=w["train_steps"] * gstep + w["eval_images"] * gimage,
                gpu_measured=True,
                gpu=torch.cuda.get_device_name(),
            )
        else:
            step_flops = 3 * flops * w["batch"]
            row.update(
                gpu_total_s=w["train_steps"] * max(step_flops / (args.gpu_tflops * 1e12), args.gpu_step_ms / 1e3)
                + w["eval_images"] * flops / (args.gpu_tflops * 1e12),
                gpu_measured=False,
            )
        rows.append(row)
        print(
            f"{name:9s} {tuple(w['shape'])!s:14s} {w['epochs']:3d} epochs {w['train_steps']:7d} steps  "
            f"CPU {row['cpu_step_s']:.3f} s/step → {hms(row['cpu_total_s'])}   "
            f"GPU {'' if row['gpu_measured'] else '≈'}{hms(row['gpu_total_s'])}",
            flush=True,
        )
    info = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "steps": args.steps,
        "gpu_tflops_assumed": None if torch.cuda.is_available() else args.gpu_tflops,
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": info, "studies": rows}, f, indent=2)


if __name__ == "__main__":
    main()
