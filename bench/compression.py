"""Deep Compression on this machine: how small a file holds the model, and what accuracy the file keeps.

For each seed a dense model is trained as the pipeline trains it (train section defaults:
10 epochs, Adam), its fp32 export written (the .pt2 the pipeline writes for a dense
baseline: the reference size), and then each case is run from it:

- ``imp-<k>-...``: iterative magnitude pruning as Han et al. ran it: prune by magnitude
  (prunelab's ``weight`` method), retrain with the masks fixed (finetune section defaults:
  early stopping on validation loss), and repeat up through ``--levels`` to k;
- ``oneshot-<k>-...``: pruned once to k, then fine-tuned once;
- then ``<bits>bit`` (k-means weight sharing, Han's linear initialisation), ``int<bits>``
  (linear per output channel) or ``fp32`` (no quantization: prunelab's .sparse as before),
  written into a .sparse file with ``prunelab.pipeline.compress.compress_model``, loaded back,
  and its test accuracy measured **on the loaded file**. An ``int8`` file is also loaded with
  PyTorch's int8 kernel allowed (``load_export(path, int8=True)``: each layer runs it where
  it is measured faster) and timed against its fp32 kernels in the same rounds.

Reported per case (mean over seeds, and each seed): ``size_ratio``, how many times smaller
the file is than the dense fp32 export (50 = 50×), ``accuracy`` of the loaded file,
``dense_accuracy`` of the dense model, and the bytes. Targets (the issue's, on R1's MLP on
mnist-5k, 3 seeds): some case at least 50× smaller within 0.5 points of the dense accuracy;
moonshot 100×. ``--check`` exits 1 when no case meets the 50× target.

Usage:
  uv run python bench/compression.py [--seeds 0 1 2] [--cases imp-0.975-5bit ...] [--json PATH] [--check]
  # LeNet-300-100 (Han et al.'s row) on full MNIST from a folder of its four idx files:
  uv run python bench/compression.py --hidden 300 100 --bias --data mnist --root PATH --cases imp-0.92-6bit
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from prunelab.config import CompressConfig, DataConfig, FinetuneConfig, ModelConfig, PruneConfig, TrainConfig
from prunelab.data import DATASETS
from prunelab.models import build_for
from prunelab.pipeline.compress import compress_model
from prunelab.pipeline.exports import write_export
from prunelab.pruning import METHODS
from prunelab.pruning.masks import make_permanent
from prunelab.seeding import seed_everything
from prunelab.train.evaluate import evaluate
from prunelab.train.fit import fit

OUT = Path(__file__).parent / "out" / "compression.json"
LEVELS = (0.5, 0.75, 0.9, 0.95, 0.975, 0.99)  # IMP's levels: each retrained before the next
CASES = (
    # the curve: k-means 5 bits at each high level, with fp32 and int8 beside it at 97.5 %
    *(f"imp-{k:g}-5bit" for k in (0.9, 0.95, 0.975, 0.99)),
    "imp-0.975-fp32",
    "imp-0.975-4bit",
    "imp-0.975-6bit",
    "imp-0.975-int8",
    "oneshot-0.95-5bit",
)
CASE = re.compile(r"^(imp|oneshot)-(0?\.\d+|0)-(\d+bit|int\d+|fp32)$")
TARGET, MOONSHOT, HOLD = 50.0, 100.0, 0.005  # × smaller, within this accuracy of the dense model


def parse_case(name: str) -> tuple[str, float, str | None, int | None]:
    """(schedule, k, scheme or None for fp32, bits) of a case name; SystemExit naming it when malformed."""
    m = CASE.match(name)
    if not m:
        sys.exit(f"case {name!r}: expected <imp|oneshot>-<k>-<bits>bit|int<bits>|fp32, e.g. imp-0.975-5bit")
    schedule, k, quant = m.group(1), float(m.group(2)), m.group(3)
    if quant == "fp32":
        return schedule, k, None, None
    scheme, bits = ("linear", int(quant[3:])) if quant.startswith("int") else ("kmeans", int(quant[:-3]))
    try:
        CompressConfig(scheme=scheme, bits=bits)
    except ValueError as exc:
        sys.exit(f"case {name!r}: {exc}")
    return schedule, k, scheme, bits


def prune_to(model, k: float, data, tune: FinetuneConfig, seed: int):
    """``model`` pruned by magnitude to ``k`` (masks attached), fine-tuned with them fixed, made permanent."""
    METHODS.get("weight").prune(model, PruneConfig(method="weight", sparsity=k), data.input_shape)
    fit(model, data, tune, seed=seed, device=torch.device("cpu"), desc=f"k={k:g}", leave=False)
    make_permanent(model)
    return model


def run_seed(seed: int, cases: list[str], args, data, folder: Path) -> dict[str, dict]:
    seed_everything(seed)
    model_cfg = ModelConfig(name="mlp", hidden=tuple(args.hidden), bias=args.bias)
    dense = build_for(model_cfg, data)
    fit(dense, data, TrainConfig(), seed=seed, device=torch.device("cpu"), desc=f"seed {seed} dense", leave=False)
    dense_accuracy = evaluate(dense, data.test, torch.device("cpu"))["accuracy"]
    dense_bytes = write_export(dense, data.input_shape, folder / f"dense-{seed}", timing="none", dense=True).bytes
    tune = FinetuneConfig()
    parsed = {c: parse_case(c) for c in cases}
    models: dict[tuple[str, float], torch.nn.Module] = {}
    imp_targets = sorted({k for s, k, *_ in parsed.values() if s == "imp"})
    if imp_targets:  # one IMP run up through every level the cases need
        model = copy.deepcopy(dense)
        for k in sorted({*(x for x in args.levels if x <= imp_targets[-1]), *imp_targets}):
            prune_to(model, k, data, tune, seed)
            models["imp", k] = copy.deepcopy(model)
    out = {}
    for case, (schedule, k, scheme, bits) in parsed.items():
        if (schedule, k) not in models:
            models[schedule, k] = prune_to(copy.deepcopy(dense), k, data, tune, seed)
        model = models[schedule, k]
        started = time.perf_counter()
        if scheme is None:  # no quantization: the fp32 .sparse export
            info = write_export(model, data.input_shape, folder / f"{case}-{seed}", timing="none")
            from prunelab.export import load_export

            loaded = load_export(info.path, force="dense")
            accuracy, size = evaluate(loaded, data.test, torch.device("cpu"))["accuracy"], info.bytes
        else:
            cfg = CompressConfig(scheme=scheme, bits=bits)
            info, values = compress_model(
                model, cfg, data.input_shape, folder / f"{case}-{seed}", dense_bytes=dense_bytes, test=data.test
            )
            accuracy, size = values["compressed_test_accuracy"], info.bytes
        extra = int8_kernels(info.path, data) if (scheme, bits) == ("linear", 8) else {}
        out[case] = extra | {
            "size_ratio": dense_bytes / size,
            "accuracy": accuracy,
            "dense_accuracy": dense_accuracy,
            "bytes": size,
            "dense_bytes": dense_bytes,
            "seconds": time.perf_counter() - started,
        }
        print(
            f"seed {seed} {case:>20}: {size / 1024:8.1f} KiB, {dense_bytes / size:6.1f}x smaller, "
            f"accuracy {accuracy:.4f} (dense {dense_accuracy:.4f})",
            flush=True,
        )
    return out


def int8_kernels(path: Path, data) -> dict:
    """The int8 file loaded twice, fp32 kernels and with PyTorch's int8 kernel allowed (each chosen by
    measurement, ``load_export(int8=True)``), timed in the same rounds at batch 1 and 64, and the
    test accuracy of each."""
    from prunelab.export import load_export
    from prunelab.measure.timing import BENCH, interleaved

    loaded = {"fp32": load_export(path, batch_sizes=(1, 64)), "int8": load_export(path, batch_sizes=(1, 64), int8=True)}
    out = {"int8_kernel_accuracy": evaluate(loaded["int8"], data.test, torch.device("cpu"))["accuracy"]}
    out["int8_layers_b64"] = sorted(n for n, k in loaded["int8"].kernels.get(64, {}).items() if k == "int8")
    for batch in (1, 64):
        x = torch.rand(batch, *data.input_shape, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            runs = {name: (lambda m=m, x=x: m(x)) for name, m in loaded.items()}
            times = interleaved(runs, **BENCH.interleaved_args())
        out[f"int8_kernel_speedup_b{batch}"] = times["fp32"].median / times["int8"].median
    return out


def summarise(per_seed: dict[int, dict[str, dict]]) -> dict[str, dict]:
    cases = next(iter(per_seed.values()))
    out = {}
    for case in cases:
        rows = [per_seed[s][case] for s in per_seed]
        keys = ["size_ratio", "accuracy", "dense_accuracy"]
        keys += [k for k in rows[0] if k.startswith("int8_kernel_")]
        mean = {key: sum(r[key] for r in rows) / len(rows) for key in keys}
        spread = (sum((r["accuracy"] - mean["accuracy"]) ** 2 for r in rows) / max(len(rows) - 1, 1)) ** 0.5
        out[case] = mean | {
            "accuracy_std": spread,
            "accuracy_drop": mean["dense_accuracy"] - mean["accuracy"],
            "bytes": sum(r["bytes"] for r in rows) / len(rows),
            "dense_bytes": rows[0]["dense_bytes"],
            "seeds": {str(s): per_seed[s][case] for s in per_seed},
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="model seeds (default 0 1 2)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), help="case names (default: the curve)")
    parser.add_argument("--levels", type=float, nargs="+", default=list(LEVELS), help="IMP's levels")
    parser.add_argument("--hidden", type=int, nargs="+", default=[1000, 1000, 500, 200], help="MLP widths (R1)")
    parser.add_argument("--bias", action="store_true", help="layers with biases (LeNet-300-100 has them)")
    parser.add_argument("--data", default="mnist-5k", help="data.name (default mnist-5k, offline)")
    parser.add_argument("--root", default=None, help="data.root: the dataset's folder (mnist: its idx files)")
    parser.add_argument("--json", type=Path, default=OUT, help=f"where to write the results (default {OUT})")
    parser.add_argument("--check", action="store_true", help="exit 1 unless a case is 50x smaller within 0.5 pt")
    args = parser.parse_args()
    for case in args.cases:
        parse_case(case)
    data = DATASETS.get(args.data)(DataConfig(name=args.data, root=args.root), 0)  # the pipeline's split (seed 0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prunelab-compression-") as tmp:
        per_seed = {s: run_seed(s, args.cases, args, data, Path(tmp)) for s in args.seeds}
    result = summarise(per_seed)
    met = {c: r for c, r in result.items() if r["size_ratio"] >= TARGET and r["accuracy_drop"] <= HOLD}
    print(f"\n{'case':>20} {'× smaller':>10} {'accuracy':>9} {'± std':>7} {'dense':>7} {'drop (pt)':>9}")
    for case, r in result.items():
        print(
            f"{case:>20} {r['size_ratio']:10.1f} {r['accuracy']:9.4f} {r['accuracy_std']:7.4f} "
            f"{r['dense_accuracy']:7.4f} {100 * r['accuracy_drop']:9.2f}" + ("  target met" if case in met else "")
        )
        if "int8_kernel_accuracy" in r:
            print(
                f"{'':>20} with int8 kernels where measured faster: accuracy {r['int8_kernel_accuracy']:.4f}, "
                f"{r['int8_kernel_speedup_b1']:.2f}x the fp32 kernels' speed at batch 1, "
                f"{r['int8_kernel_speedup_b64']:.2f}x at 64"
            )
    best = max(met, key=lambda c: met[c]["size_ratio"]) if met else None
    print(
        f"\ntarget {TARGET:g}x within {100 * HOLD:g} pt: "
        + (f"met by {best} ({met[best]['size_ratio']:.1f}x)" if best else "not met")
        + (f"; moonshot {MOONSHOT:g}x met" if best and met[best]["size_ratio"] >= MOONSHOT else "")
        + f" ({len(args.seeds)} seeds, {time.perf_counter() - started:.0f} s)"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")  # {case: {...}} only: the run is printed
    print(
        f"{args.data}, mlp {args.hidden}{' with biases' if args.bias else ''}, seeds {args.seeds}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; wrote {args.json}"
    )
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
