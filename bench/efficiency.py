"""What pruning buys on this machine: each pruned model's export against the dense model, side by side.

Every case builds its dense model (random weights, seed 0: speed and size do not depend
on what the weights learned), prunes a copy with prunelab's own method object
(``METHODS.get(name).prune`` then ``make_permanent``, as the prune stage does), writes its
export with ``prunelab.export.export_model`` (which measures each sparse layer's kernels
at batch 1 and at ``--batch`` on this machine) and the dense model's export, and times, in
one process and interleaved round by round, the dense export ("dense": both sides then
run as exports), the export, and the dense and pruned models as the pipeline holds them
(nn.Modules, the pruned one multiplying its zeros), at ``--batch`` and at batch 1.

- R1 MLP: the default model config, mlp 784→1000→1000→500→200→10, no biases, 1×28×28
  inputs: ``weight`` at 0.9, 0.95 and 0.99, ``weight_global`` at 0.9, ``unit`` at 0.5 as
  masks and physically (``prune.physical: true``).
- R2's CIFAR-10 CNN: ``cifar_cnn`` without biases, 3×32×32 inputs: ``filter`` at 0.5.
- ``*-dense``: each model's own export (a .pt2) against itself: the control, what two
  identical programs measure apart on this machine.

Reported per case: sizes on disk (the dense model's checkpoint as ``checkpoint.save``
writes it, the pruned model's, the export), FLOPs per image (dense, executed by the
export at each batch size, ideal), the median time per batch and its interquartile range
for each side, the speedups dense/export and dense nn.Module/export (ratios of medians
from the same run), peak memory of a forward pass at ``--batch`` (peak RSS increase on the
CPU), the time of one training epoch of the pruned model against the dense one (1,024
random images, batch 128, Adam), the export's kernel per layer, and the largest |logit
difference| between the pruned model and its export. Machine load while timing is
reported (``machine_load.py``).

Usage: uv run python bench/efficiency.py [--rounds N] [--batch 64] [--only weight-0.9] [--json PATH] [--check]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from machine_load import MachineLoad  # bench/ is on sys.path: it is the script's folder

from prunelab.config import FinetuneConfig, ModelConfig
from prunelab.data.spec import Split
from prunelab.export import export_model, load_export
from prunelab.measure.epoch import train_epoch_cost
from prunelab.measure.flops import export_flops_per_image, flops_per_image
from prunelab.measure.latency import compare_latency
from prunelab.measure.memory import peak_inference
from prunelab.measure.timing import BENCH
from prunelab.models import MODELS
from prunelab.pruning import METHODS, STRUCTURAL
from prunelab.pruning.masks import make_permanent
from prunelab.pruning.options import configure
from prunelab.train import checkpoint

OUT = Path(__file__).resolve().parent / "out" / "efficiency.json"
CLASSES = 10
TRAIN_IMAGES = 1024


@dataclass(frozen=True)
class Case:
    name: str
    model: str  # "mlp" (R1) or "cifar_cnn" (R2)
    method: str | None = None  # None: the dense model's own export
    sparsity: float = 0.0
    physical: bool = False
    # targets at --batch (None: reported only); size against the dense model's checkpoint
    speedup: float | None = None
    size_ratio: float | None = None


CASES = [
    Case("mlp-dense", "mlp"),
    Case("weight-0.9", "mlp", "weight", 0.9, speedup=1.8, size_ratio=0.15),
    Case("weight-0.95", "mlp", "weight", 0.95, speedup=3.0),
    Case("weight-0.99", "mlp", "weight", 0.99, size_ratio=0.03),
    Case("weight_global-0.9", "mlp", "weight_global", 0.9),
    Case("unit-masks-0.5", "mlp", "unit", 0.5),
    Case("unit-0.5", "mlp", "unit", 0.5, physical=True, speedup=2.5),
    Case("cnn-dense", "cifar_cnn"),
    Case("filter-0.5", "cifar_cnn", "filter", 0.5, speedup=2.0),
]
MODEL_CFG = {"mlp": ModelConfig(), "cifar_cnn": ModelConfig(name="cifar_cnn", bias=False)}
SHAPE = {"mlp": (1, 28, 28), "cifar_cnn": (3, 32, 32)}


def build(case: Case) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS.get(case.model)(MODEL_CFG[case.model], SHAPE[case.model], CLASSES).eval()


def prune(dense: torch.nn.Module, case: Case) -> tuple[torch.nn.Module, bool]:
    """The pruned copy, and whether it was pruned structurally."""
    model = copy.deepcopy(dense)
    if case.method is None:
        return model, False
    cfg = configure(method=case.method, sparsity=case.sparsity, physical=case.physical)
    method = METHODS.get(case.method)
    method.prune(model, cfg, SHAPE[case.model])
    make_permanent(model)
    return model.eval(), method.kind(cfg) == STRUCTURAL


def file_bytes(model: torch.nn.Module, case: Case, path: Path) -> int:
    checkpoint.save(path, checkpoint.Checkpoint(model, MODEL_CFG[case.model], SHAPE[case.model], CLASSES))
    return path.stat().st_size


def run_case(case: Case, args: argparse.Namespace, folder: Path) -> dict:
    shape = SHAPE[case.model]
    dense = build(case)
    pruned, structural = prune(dense, case)
    info = export_model(pruned, shape, folder / case.name, structural=structural, batch_sizes=(1, args.batch))
    export = load_export(info.path, batch_sizes=(1, args.batch), kernels=info.kernels)
    with torch.inference_mode():
        x = torch.rand(256, *shape, generator=torch.Generator().manual_seed(2))
        expected, got = pruned(x), export(x)
    result = {
        "format": info.format,
        "dense_checkpoint_bytes": file_bytes(dense, case, folder / f"{case.name}-dense.pt"),
        "pruned_checkpoint_bytes": file_bytes(pruned, case, folder / f"{case.name}-pruned.pt"),
        "export_bytes": info.bytes,
        "storage": info.storage,
        "kernels": {str(b): k for b, k in info.kernels.items()},
        "kernel_ms": {
            str(b): {layer: {k: t * 1e3 for k, t in times.items()} for layer, times in per.items()}
            for b, per in info.kernel_times.items()
        },
        "max_abs_logit_diff": float((got - expected).abs().max()),
        "same_predictions": bool((got.argmax(1) == expected.argmax(1)).all()),
        "flops_dense": flops_per_image(dense, shape)["flops_dense"],
        "flops_pruned": flops_per_image(pruned, shape)["flops_dense"],
        "flops_ideal": flops_per_image(pruned, shape)["flops_ideal"],
        f"flops_export_b{args.batch}": export_flops_per_image(export, args.batch),
        "flops_export_b1": export_flops_per_image(export, 1),
    }
    result["size_ratio"] = result["export_bytes"] / result["dense_checkpoint_bytes"]
    # dense: the dense model's own export (a .pt2, run like every export); the eager modules
    # are the models as the pipeline holds them (the pruned one multiplies its zeros)
    dense_info = export_model(dense, shape, folder / f"{case.name}-dense", structural=True, batch_sizes=(1,))
    sides = {
        "dense": load_export(dense_info.path, batch_sizes=(1,)),
        "export": export,
        "dense_eager": dense,
        "pruned_eager": pruned,
    }
    result["dense_export_bytes"] = dense_info.bytes
    for batch in (args.batch, 1):
        times = compare_latency(sides, shape, batch, policy=dataclasses.replace(BENCH, rounds=args.rounds))
        for side, t in times.items():
            result[f"{side}_ms_b{batch}"] = t.median * 1e3
            result[f"{side}_iqr_ms_b{batch}"] = t.iqr * 1e3
        result[f"speedup_b{batch}"] = times["dense"].median / times["export"].median
        result[f"speedup_vs_eager_b{batch}"] = times["dense_eager"].median / times["export"].median
        result["threads"] = times["dense"].threads
    for side in ("dense", "export"):
        result[f"{side}_peak_infer_bytes_b{args.batch}"] = peak_inference(sides[side], shape, args.batch).bytes
    images = torch.randint(
        0, 256, (TRAIN_IMAGES, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(3)
    )
    split = Split(images, torch.randint(0, CLASSES, (TRAIN_IMAGES,), generator=torch.Generator().manual_seed(4)))
    for side, model in (("dense", dense), ("pruned", pruned)):
        cost = train_epoch_cost(model, split, FinetuneConfig(batch_size=128))
        result[f"{side}_train_epoch_s"] = cost["train_epoch_s"]
        result[f"{side}_peak_train_bytes"] = cost["peak_train_bytes"]
    return result


def targets(case: Case, r: dict, batch: int, control_b1: float | None) -> list[tuple[str, str]]:
    """(description, status) for each target of the case: "met", "NOT MET" or "same program"."""
    out = []

    def check(text: str, met: bool) -> None:
        out.append((text, "met" if met else "NOT MET"))

    if case.speedup is not None:
        check(
            f"{case.name}: {r[f'speedup_b{batch}']:.2f}x at batch {batch} (>= {case.speedup}x)",
            r[f"speedup_b{batch}"] >= case.speedup,
        )
    if case.size_ratio is not None:
        check(
            f"{case.name}: size {r['size_ratio']:.3f} of the dense file (<= {case.size_ratio})",
            r["size_ratio"] <= case.size_ratio,
        )
    if case.method is not None:
        b1 = r["speedup_b1"]
        text = f"{case.name}: {b1:.2f}x at batch 1 (not slower than dense)"
        if b1 < 1.0 and r["format"] == "sparse" and set(r["kernels"].get("1", {}).values()) == {"dense"}:
            # every layer fell back: the export runs the very program the dense export runs, so
            # the gap is what two identical programs measure apart here (the mlp-dense control)
            control = f"; the dense export against itself: {control_b1:.2f}x" if control_b1 else ""
            out.append(
                (f"{text}: every layer fell back to dense, so it runs the dense program{control}", "same program")
            )
        else:
            check(text, b1 >= 1.0)
        check(
            f"{case.name}: same predictions, max |logit diff| {r['max_abs_logit_diff']:.1e} (<= 1e-4)",
            r["same_predictions"] and r["max_abs_logit_diff"] <= 1e-4,
        )
    return out


def table(results: dict[str, dict], batch: int) -> None:
    b = f"b{batch}"
    print(
        f"\n{'':<18} {'':<6} {'size':>15} {'MFLOP per image':>23}  {f'batch {batch}: ms per batch':>33}"
        f"  {'batch 1: ms':>22}  {'peak MB':>9} {'epoch s':>9}  {'sparse':>6}"
    )
    print(
        f"{'case':<18} {'format':<6} {'KB':>7} {'ratio':>7} {'dense':>7} {'export':>7} {'ideal':>7}  "
        f"{'dense':>7} {'export':>7} {'speedup':>8} {'eager':>8}  {'dense':>6} {'export':>6} {'speedup':>8}  "
        f"{'d':>4} {'e':>4} {'d':>4} {'p':>4}  {'layers':>6}"
    )
    for name, r in results.items():
        sparse_at = {k: sum(v != "dense" for v in r["kernels"].get(k, {}).values()) for k in (str(batch), "1")}
        n = len(r["kernels"].get(str(batch), {}))
        peak = [r[f"{side}_peak_infer_bytes_{b}"] for side in ("dense", "export")]
        print(
            f"{name:<18} {r['format']:<6} {r['export_bytes'] / 1024:>7.0f} {r['size_ratio']:>7.3f} "
            f"{r['flops_dense'] / 1e6:>7.2f} {r[f'flops_export_{b}'] / 1e6:>7.2f} {r['flops_ideal'] / 1e6:>7.2f}  "
            f"{r[f'dense_ms_{b}']:>7.3f} {r[f'export_ms_{b}']:>7.3f} {r[f'speedup_{b}']:>7.2f}x "
            f"{r[f'speedup_vs_eager_{b}']:>7.2f}x  {r['dense_ms_b1']:>6.3f} {r['export_ms_b1']:>6.3f} "
            f"{r['speedup_b1']:>7.2f}x  "
            + " ".join(f"{p / 2**20:>4.1f}" if p is not None else "   -" for p in peak)
            + f" {r['dense_train_epoch_s']:>4.2f} {r['pruned_train_epoch_s']:>4.2f}  "
            f"{f'{sparse_at[str(batch)]}/{sparse_at[chr(49)]} of {n}' if n else '-':>6}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rounds",
        type=int,
        default=BENCH.rounds,
        help=f"timed rounds per side and batch size (default {BENCH.rounds}: measure.timing.BENCH)",
    )
    parser.add_argument("--batch", type=int, default=64, help="the throughput batch size (default 64)")
    parser.add_argument("--only", nargs="*", help="run only these cases")
    parser.add_argument("--json", type=Path, default=OUT, help=f"where to write the results (default {OUT})")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()

    cases = [c for c in CASES if not args.only or c.name in args.only]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, MachineLoad() as load:
        for case in cases:
            print(f"{case.name} ...", flush=True)
            results[case.name] = run_case(case, args, Path(tmp))
    for r in results.values():
        r.update(other_cores=load.other_cores, steal_cores=load.steal_cores)

    print(
        f"\nefficiency: torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} interleaved "
        f"rounds per batch size; times are medians per batch. dense: the dense model's export (.pt2); "
        f"speedup = dense / export, eager = the dense nn.Module / export; ratio = export / dense checkpoint; "
        f"peak MB: a forward pass at batch {args.batch} (peak RSS increase), dense/export; epoch s: one "
        f"training epoch of {TRAIN_IMAGES} images, dense/pruned model; sparse layers: how many run a sparse or "
        f"rows kernel at batch {args.batch}/1"
    )
    table(results, args.batch)
    control = results.get("mlp-dense", {}).get("speedup_b1")
    checks = [t for c in cases for t in targets(c, results[c.name], args.batch, control)]
    print()
    for text, status in checks:
        print(f"  {status:<12}  {text}")
    print(f"while timing, {load.describe()}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.json} (python {platform.python_version()})")
    return 1 if args.check and any(status == "NOT MET" for _, status in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
