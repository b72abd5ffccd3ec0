"""What pruning buys on this machine: each pruned model's export against the dense model, side by side.

Every case builds its dense model (random weights, seed 0: speed and size do not depend
on what the weights learned), prunes a copy with prunelab's own method object
(``METHODS.get(name).prune`` then ``make_permanent``, as the prune stage does), writes its
export with ``prunelab.export.export_model`` (which measures each sparse layer's kernels
at batch 1 and at ``--batch`` on this machine) and the dense model's export, and times, in
one process and interleaved round by round, the dense export ("dense": both sides then
run as exports), the export, and the dense and pruned models as the pipeline holds them
(nn.Modules, the pruned one multiplying its zeros), at ``--batch`` and at batch 1.

Also in the same rounds, ONNX Runtime (another runtime's dense speed, the bar a sparse export
has to clear outside PyTorch): the dense and the pruned model written with
``torch.onnx.export`` (the dynamo exporter, a dynamic batch dimension) and run by an
``onnxruntime.InferenceSession`` on the CPUExecutionProvider, all graph optimisations,
``intra_op_num_threads = torch.get_num_threads()`` (both runtimes use the same number of
threads), one inter-op thread, its intra-op threads not spinning between calls
(``session.intra_op.allow_spinning=0``: a spinning pool would take a core from the side timed
next on a 2-core machine; ``--ort-spin`` lets it spin). "ort_dense" is the dense model;
"ort_pruned" the pruned one, its masked zeros multiplied (ORT does not skip them; removed
units or filters are gone). Reported: export against ORT dense (``speedup_vs_ort``), and
ORT against the dense export.

With ``--int8`` (R1 MLP cases only), int8 dynamic quantization (weights int8 per tensor,
activations quantized per batch) of the dense and of the pruned model, also in the same
rounds: PyTorch's ``torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, qint8)``
(deprecated in favour of torchao, which is not installed, but still in torch 2.14) once per
quantized engine in ``--engines`` (fbgemm, x86, onednn: each model keeps its engine's packed
weights, so they run side by side), and ORT's ``onnxruntime.quantization.quantize_dynamic``
(QInt8 weights, MatMulInteger). Each is reported against the fp32 dense export and the fp32
dense nn.Module from the same rounds, with its accuracy cost: the largest |logit difference|
from the fp32 model it was quantized from, relative to that model's largest |logit|, and the
share of 256 inputs whose argmax is unchanged. The oneDNN engine honours the environment
variable ONEDNN_MAX_CPU_ISA, which must be set before torch starts oneDNN:
``--onednn-isa AVX2`` re-executes the script with it set (AVX2: no VNNI; unset: the CPU's
best, AVX-512 VNNI on the AMD EPYC); the ISA and the matmul implementation oneDNN picked
(from ONEDNN_VERBOSE in a child process) are recorded. fbgemm, x86 and ORT choose their
kernels themselves (the variable does not reach them).

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
       [--int8 [--engines fbgemm x86 onednn] [--onednn-isa AVX2]] [--no-ort] [--ort-spin]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import warnings
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
ISA_ENV = "ONEDNN_MAX_CPU_ISA"
ENGINES = ("fbgemm", "x86", "onednn")


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


class OrtModule(torch.nn.Module):
    """An ONNX Runtime session called like a module: the input's memory handed to ORT as a
    NumPy array and its output handed back as a tensor, neither copied."""

    def __init__(self, path: Path, spin: bool) -> None:
        import onnxruntime as ort

        super().__init__()
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same threads as PyTorch
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.threads = options.intra_op_num_threads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input: x.contiguous().numpy()})[0])


def write_onnx(model: torch.nn.Module, shape: tuple[int, ...], path: Path) -> Path:
    """``model`` as an ONNX file with a dynamic batch dimension (torch.onnx.export, dynamo)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.rand(2, *shape),),
            str(path),
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    return path


def ort_int8(path: Path) -> Path:
    """ORT's dynamic int8 quantization of an ONNX file (int8 weights, MatMulInteger)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = path.with_name(f"{path.stem}-int8.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises pre-processing (shape inference) on every call
    try:
        quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return out


def torch_int8(model: torch.nn.Module, engine: str) -> torch.nn.Module:
    """PyTorch's dynamic int8 quantization of ``model``'s Linear layers, packed for ``engine``."""
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
            return torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8
            ).eval()
    finally:
        torch.backends.quantized.engine = before


PROBE = """
import warnings; warnings.simplefilter("ignore")
import torch
torch.backends.quantized.engine = "onednn"
m = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(64, 64)), {torch.nn.Linear})
m(torch.rand(4, 64))
"""


def onednn_probe() -> dict:
    """The ISA oneDNN runs on here and its int8 matmul implementation, under this process's
    environment (ONEDNN_MAX_CPU_ISA included): from ONEDNN_VERBOSE in a child process."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    run = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    isa = matmul = None
    for line in run.stdout.splitlines():
        fields = line.split(",")
        if ",info,cpu,isa:" in line:
            isa = line.split("isa:", 1)[1]
        elif ",exec,cpu,matmul," in line and matmul is None:
            matmul = fields[fields.index("matmul") + 1]
    return {"onednn_isa": isa, "onednn_int8_matmul": matmul}


def logit_error(got: torch.Tensor, expected: torch.Tensor) -> dict:
    diff = float((got - expected).abs().max())
    return {
        "max_abs_logit_diff": diff,
        "rel_logit_diff": diff / max(float(expected.abs().max()), 1e-30),
        "same_argmax": float((got.argmax(1) == expected.argmax(1)).float().mean()),
    }


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
    # more sides in the same rounds: ONNX Runtime, and int8 (their fp32 references: dense, pruned)
    extra: dict[str, tuple[torch.nn.Module, torch.nn.Module]] = {}
    if not args.no_ort:
        import onnxruntime

        onnx_dense = write_onnx(dense, shape, folder / f"{case.name}-dense.onnx")
        onnx_pruned = write_onnx(pruned, shape, folder / f"{case.name}-pruned.onnx")
        extra["ort_dense"] = (OrtModule(onnx_dense, args.ort_spin), dense)
        extra["ort_pruned"] = (OrtModule(onnx_pruned, args.ort_spin), pruned)
        result.update(
            ort_version=onnxruntime.__version__,
            ort_threads=extra["ort_dense"][0].threads,
            ort_spinning=args.ort_spin,
            ort_dense_onnx_bytes=onnx_dense.stat().st_size,
            ort_pruned_onnx_bytes=onnx_pruned.stat().st_size,
        )
    if args.int8 and case.model == "mlp":
        for engine in args.engines:
            extra[f"int8_{engine}_dense"] = (torch_int8(dense, engine), dense)
            extra[f"int8_{engine}_pruned"] = (torch_int8(pruned, engine), pruned)
        if not args.no_ort:
            extra["ort_int8_dense"] = (OrtModule(ort_int8(onnx_dense), args.ort_spin), dense)
            extra["ort_int8_pruned"] = (OrtModule(ort_int8(onnx_pruned), args.ort_spin), pruned)
        result.update(int8_engines=list(args.engines), onednn_max_cpu_isa=os.environ.get(ISA_ENV), **args.probe)
    with torch.inference_mode():
        for side, (module, reference) in extra.items():
            for key, value in logit_error(module(x), reference(x)).items():
                result[f"{side}_{key}"] = value
    sides.update({side: module for side, (module, _) in extra.items()})
    for batch in (args.batch, 1):
        times = compare_latency(sides, shape, batch, policy=dataclasses.replace(BENCH, rounds=args.rounds))
        for side, t in times.items():
            result[f"{side}_ms_b{batch}"] = t.median * 1e3
            result[f"{side}_iqr_ms_b{batch}"] = t.iqr * 1e3
        result[f"speedup_b{batch}"] = times["dense"].median / times["export"].median
        result[f"speedup_vs_eager_b{batch}"] = times["dense_eager"].median / times["export"].median
        result["threads"] = times["dense"].threads
        if "ort_dense" in times:  # prunelab's export against ONNX Runtime running the dense model
            result[f"speedup_vs_ort_b{batch}"] = times["ort_dense"].median / times["export"].median
        for side in extra:  # each extra side against the fp32 dense export and the fp32 dense module
            result[f"{side}_speedup_b{batch}"] = times["dense"].median / times[side].median
            result[f"{side}_speedup_vs_eager_b{batch}"] = times["dense_eager"].median / times[side].median
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


def extra_table(results: dict[str, dict], batch: int, sides: list[str]) -> None:
    """The extra sides' median ms per batch and ratios of medians from the same rounds: the fp32
    dense export / the side (x), the fp32 dense module / the side (eager), ORT dense / the side (ort)."""
    print(
        f"{'case':<18} {'side':<20}"
        + "".join(f"  {f'b{b} ms':>8} {'x':>6} {'eager':>6} {'ort':>6}" for b in (batch, 1))
        + f"  {'Δlogit':>7} {'argmax':>6}"
    )
    for name, r in results.items():
        for side in [s for s in sides if f"{s}_ms_b1" in r]:
            line = f"{name:<18} {side:<20}"
            for b in (batch, 1):
                ms = r[f"{side}_ms_b{b}"]
                ort = f"{r[f'ort_dense_ms_b{b}'] / ms:>5.2f}x" if f"ort_dense_ms_b{b}" in r else "-"
                dense, eager = r[f"dense_ms_b{b}"] / ms, r[f"dense_eager_ms_b{b}"] / ms
                line += f"  {ms:>8.3f} {dense:>5.2f}x {eager:>5.2f}x {ort:>6}"
            if f"{side}_rel_logit_diff" in r:
                line += f"  {r[f'{side}_rel_logit_diff']:>7.1e} {r[f'{side}_same_argmax']:>6.3f}"
            print(line)


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
    parser.add_argument("--no-ort", action="store_true", help="leave out the ONNX Runtime sides")
    parser.add_argument("--ort-spin", action="store_true", help="let ORT's intra-op threads spin between calls")
    parser.add_argument("--int8", action="store_true", help="add int8 dynamic quantization sides (R1 MLP cases)")
    parser.add_argument(
        "--engines",
        nargs="*",
        default=[e for e in ENGINES if e in torch.backends.quantized.supported_engines],
        help="PyTorch quantized engines to time with --int8 (default: those of fbgemm, x86, onednn here)",
    )
    parser.add_argument(
        "--onednn-isa",
        help=f"run with {ISA_ENV} set to this (e.g. AVX2: no VNNI); the script re-executes itself with it",
    )
    args = parser.parse_args()
    if args.onednn_isa and os.environ.get(ISA_ENV) != args.onednn_isa:  # oneDNN reads it once, at start
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, ISA_ENV: args.onednn_isa})
    args.probe = onednn_probe() if args.int8 else {}

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
    if not args.no_ort:
        print(
            f"\nONNX Runtime {next(iter(results.values())).get('ort_version')}, CPUExecutionProvider, "
            f"{torch.get_num_threads()} intra-op threads, spinning {'on' if args.ort_spin else 'off'}, "
            "same rounds; export: prunelab's export of the pruned model"
        )
        extra_table(results, args.batch, ["ort_dense", "ort_pruned", "export"])
    if args.int8:
        print(
            f"\nint8 dynamic quantization: {ISA_ENV}={os.environ.get(ISA_ENV, '(unset)')}, oneDNN ISA "
            f"{args.probe.get('onednn_isa')}, int8 matmul {args.probe.get('onednn_int8_matmul')}; x = the fp32 "
            "dense export / the side (same rounds); eager = the fp32 dense nn.Module / the side; "
            "Δlogit: largest |difference| from the fp32 model, relative to its largest |logit|"
        )
        sides = [f"int8_{e}_{m}" for e in args.engines for m in ("dense", "pruned")]
        extra_table(results, args.batch, sides + ([] if args.no_ort else ["ort_int8_dense", "ort_int8_pruned"]))
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
