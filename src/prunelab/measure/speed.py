"""The ``speed`` metric: latency, throughput, peak memory, training time per epoch, what the
export executes with the kernels it measured, and the load the timings were taken under.

Timed, so they differ from run to run: MLflow and the timings files only (every column
``table=False, point=False``), never a file DVC hashes. How carefully it times is the
subject's ``timing`` preset (``timing.TimingPolicy``); latency as ``latency.py`` takes
it, memory as ``memory.py``, epoch time as ``epoch.py``, the load as ``load.py``. New
columns go at the end: the timings files and results/efficiency/points.csv list them in
this order.
"""

from __future__ import annotations

from typing import Any

from prunelab.measure.epoch import fit_epoch_s, train_epoch_cost
from prunelab.measure.flops import export_flops_per_image
from prunelab.measure.latency import compare_latency
from prunelab.measure.load import MachineLoad
from prunelab.measure.memory import peak_inference
from prunelab.measure.metric import METRICS, Column, Metric, Subject
from prunelab.measure.timing import device_of


def speed(subject: Subject) -> dict[str, Any]:
    import torch

    from prunelab.train.evaluate import EVAL_BATCH
    from prunelab.train.evaluate import eval_batch as fitting_batch

    shape = subject.image_shape()
    device = device_of(subject.device)
    # the batch evaluate runs: EVAL_BATCH or fewer where the model's activations need it
    # (train.evaluate.eval_batch), or the whole test split where it is smaller
    eval_batch = EVAL_BATCH
    if subject.split is not None:
        eval_batch = min(fitting_batch(subject.model, subject.split.images[:2].to(device)), len(subject.split))
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "eval_batch": eval_batch}
    if shape is not None:
        sides = {"": subject.model}
        if subject.reference is not None:
            sides["dense_"] = subject.reference
        if subject.export is not None:
            from prunelab.export import load_export

            reuse = subject.export.kernels if str(device) == subject.export.device else None
            sides["export_"] = load_export(
                subject.export.path, device=device, batch_sizes=(1, EVAL_BATCH), kernels=reuse
            )
        timed = []
        with MachineLoad(torch.get_num_threads()) as load:  # what else ran while the rounds ran
            for batch in (1, eval_batch):
                timings = compare_latency(sides, shape, batch, device=device, policy=subject.timing)
                timed.extend(timings.values())
                for prefix, timing in timings.items():
                    if batch == 1:
                        out[f"{prefix}latency_b1_ms"] = timing.median * 1e3
                        out[f"{prefix}latency_b1_iqr_ms"] = timing.iqr * 1e3
                    else:
                        out[f"{prefix}throughput_ips"] = timing.throughput
        out.update(load.values(timed))
        for prefix, module in sides.items():
            out[f"{prefix}peak_infer_bytes"] = peak_inference(module, shape, eval_batch, device=device).bytes
        if "export_" in sides:
            out["export_flops_b1"] = export_flops_per_image(sides["export_"], 1)
            out["export_flops_eval"] = export_flops_per_image(sides["export_"], eval_batch)
        if "dense_" in sides:  # what the user runs (the export if any) against the dense model, same rounds
            run = "export_" if "export_" in sides else ""
            out["speedup_b1"] = out["dense_latency_b1_ms"] / out[f"{run}latency_b1_ms"]
            out["speedup_eval"] = out[f"{run}throughput_ips"] / out["dense_throughput_ips"]
    if subject.train is not None and subject.optim is not None:
        epoch = train_epoch_cost(subject.model, subject.train, subject.optim, device=device)
        out["train_epoch_s"], out["peak_train_bytes"] = epoch["train_epoch_s"], epoch["peak_train_bytes"]
        if subject.reference is not None and getattr(subject.reference, "trainable", True):
            dense = train_epoch_cost(subject.reference, subject.train, subject.optim, device=device)
            out["dense_train_epoch_s"] = dense["train_epoch_s"]
            out["dense_peak_train_bytes"] = dense["peak_train_bytes"]
    elif subject.fit is not None:
        out["train_epoch_s"] = fit_epoch_s(subject.fit)
    return {k: v for k, v in out.items() if v is not None}


_MEMORY = "CUDA: max_memory_allocated minus allocated at the start; CPU: peak RSS increase (PeakMemory)"
_TIMED = {"table": False, "point": False}  # timings differ run to run: MLflow, never DVC-hashed files

METRICS.add(
    Metric(
        "speed",
        "latency, throughput, peak memory and epoch time, measured: they differ from run to run",
        (
            Column("threads", "PyTorch CPU threads during every timing here (torch.get_num_threads())", **_TIMED),
            Column(
                "latency_b1_ms",
                "median forward time at batch 1, ms (warm, rounds interleaved with the export)",
                **_TIMED,
            ),
            Column("latency_b1_iqr_ms", "interquartile range of those times, ms", **_TIMED),
            Column(
                "eval_batch",
                "the evaluation batch the throughputs are measured at: EVAL_BATCH (1,024), fewer where the "
                "model's activations would not fit the device, or the test split's size where smaller "
                "(the batch evaluate runs)",
                **_TIMED,
            ),
            Column(
                "throughput_ips", "images per second at the evaluation batch (eval_batch), from the median", **_TIMED
            ),
            Column("export_latency_b1_ms", "the export's median forward time at batch 1, ms", **_TIMED),
            Column("export_latency_b1_iqr_ms", "interquartile range of the export's times, ms", **_TIMED),
            Column("export_throughput_ips", "the export's images per second at the evaluation batch", **_TIMED),
            Column(
                "peak_infer_bytes",
                f"peak memory one forward pass at the evaluation batch adds, bytes ({_MEMORY})",
                **_TIMED,
            ),
            Column("export_peak_infer_bytes", "the same for the export, bytes", **_TIMED),
            Column(
                "dense_latency_b1_ms",
                "the dense model's median forward time at batch 1, ms, timed in the same rounds",
                **_TIMED,
            ),
            Column("dense_latency_b1_iqr_ms", "interquartile range of the dense model's times, ms", **_TIMED),
            Column("dense_throughput_ips", "the dense model's images per second at the evaluation batch", **_TIMED),
            Column("dense_peak_infer_bytes", "the same peak memory for the dense model, bytes", **_TIMED),
            Column(
                "speedup_b1",
                "dense latency / latency of the export (of the model where there is no export), "
                "batch 1: above 1 is faster than dense",
                **_TIMED,
            ),
            Column("speedup_eval", "the same ratio of throughputs at the evaluation batch", **_TIMED),
            Column(
                "export_flops_b1",
                "FLOPs per image the export executes at batch 1 with the kernels it measured "
                "(a sparse kernel counts nonzero multiply-adds)",
                **_TIMED,
            ),
            Column("export_flops_eval", "the same at the evaluation batch", **_TIMED),
            Column(
                "train_epoch_s",
                "seconds for one warm training epoch of a copy of the model, no validation "
                "(in the sweep: the median of its fine-tuning epochs' training passes)",
                **_TIMED,
            ),
            Column("dense_train_epoch_s", "the same for the dense model, in the same run", **_TIMED),
            Column("dense_peak_train_bytes", "peak_train_bytes of the dense model, bytes", **_TIMED),
            Column(
                "peak_train_bytes",
                f"peak memory of its first training steps with a fresh optimiser, bytes ({_MEMORY})",
                **_TIMED,
            ),
            # the load the latencies and throughputs above were timed under (measure/load.py); appended: order is kept
            Column("cpus", "cores of the machine (os.cpu_count())", **_TIMED),
            Column(
                "load_1m",
                "1-minute load average (runnable tasks, this process's threads included), the higher of "
                "the start and the end of the timed rounds",
                **_TIMED,
            ),
            Column(
                "own_cores",
                "cores this process used on average during the timed rounds (its CPU time / wall time)",
                **_TIMED,
            ),
            Column(
                "other_cores",
                "cores everything else used on average during the timed rounds, steal included "
                "(/proc/stat busy time minus this process's)",
                **_TIMED,
            ),
            Column(
                "timing_spread", "the largest interquartile range / median among the timed sides and batches", **_TIMED
            ),
            Column(
                "noisy",
                "timed under load: other_cores above the cores its threads left free by more than 0.25, "
                "or timing_spread above 0.25; the report leaves it out of speed-ups",
                **_TIMED,
            ),
        ),
        speed,
    )
)
