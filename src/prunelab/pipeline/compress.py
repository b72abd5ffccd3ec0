"""Stage compress: Deep Compression's last two steps on the fine-tuned model, and the file measured.

Quantize (``prunelab.compress``: k-means weight sharing or linear per channel, optionally
trained), encode and entropy code (``export.codec``) into ``models/export/compressed/model.sparse``
(version 2), then load that file back and measure it: its bytes, the ratio to the dense
model's fp32 export, and the test accuracy of the file as loaded, never of the model in
memory. ``compress_model`` is the same work for any model: the sweep calls it per point
(the "compressed" regime).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from prunelab import atomic, config, paths
from prunelab.config import CompressConfig, FinetuneConfig


def compress_model(
    model: Any,
    cfg: CompressConfig,
    input_shape: tuple[int, ...],
    stem: Path,
    *,
    dense_bytes: int,
    test: Any,
    device: Any = "cpu",
    data: Any = None,
    finetune: FinetuneConfig | None = None,
    seed: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """(ExportInfo, values) of ``model`` compressed by ``cfg`` into ``stem``.sparse; ``model`` is not changed.

    values: the ``compression`` metric (bytes, ratio and factor against ``dense_bytes``) and
    the ``test`` metric of the file as loaded back, prefixed ``compressed_``. Trained
    quantization (``cfg.finetune_epochs``) trains on ``data`` with ``finetune``'s optimiser."""
    from prunelab.compress import finetune_centroids, quantize
    from prunelab.export import load_export
    from prunelab.measure import METRICS, Subject
    from prunelab.measure.timing import device_of
    from prunelab.pipeline.exports import write_export
    from prunelab.pruning.masks import make_permanent

    device = device_of(device)
    work = copy.deepcopy(model).cpu().eval()
    make_permanent(work)
    try:
        shared = quantize(work, cfg.scheme, cfg.bits)
    except ValueError as exc:  # a model the scheme does not apply to
        from prunelab.errors import ConfigError

        raise ConfigError("compress.scheme", cfg.scheme, f"a scheme that applies to the model ({exc})") from None
    if cfg.finetune_epochs:
        shared = finetune_centroids(
            work,
            shared,
            data,
            finetune or FinetuneConfig(),
            epochs=cfg.finetune_epochs,
            lr=cfg.lr,
            seed=seed,
            device=device,
        )
        work.cpu()
    info = write_export(work, input_shape, stem, timing="none", shared=shared)
    loaded = info.module or load_export(info.path, device=device, force="dense")  # decoded from the file
    values = METRICS.get("compression")(Subject(None, export=info, dense_bytes=dense_bytes))
    values |= METRICS.get("test")(Subject(loaded, split=test, device=device), "compressed_")
    return info, values


def compress() -> None:
    params = config.load_params()
    cfg, seed = config.section(params, CompressConfig), config.seed(params)
    tune = config.section(params, FinetuneConfig)
    from prunelab.data import load_prepared
    from prunelab.train import checkpoint
    from prunelab.train.fit import resolve_device

    device = resolve_device(config.section(params, config.TrainConfig).device)
    tuned = checkpoint.load(paths.FINETUNED_MODEL)
    data = load_prepared(paths.PREPARED_DATA)
    dense = atomic.read_json(paths.baseline_metrics(seed))
    dense_bytes = paths.baseline_export(seed).stat().st_size
    from prunelab import track  # mlflow's import is slow: bad params and inputs are reported before it

    meta = tuned.meta
    tags = track.run_tags(
        "compress",
        dataset=data.name,
        model=tuned.model_cfg.name,
        method=meta.get("method"),
        sparsity=meta.get("sparsity"),
    )
    run_params = {"compress": {k: v for k, v in cfg.as_dict().items() if k != "sweep"}, "seed": seed}
    with track.start_run("compress", params=run_params, tags=tags, dataset=(paths.PREPARED_DATA, data.name, "test")):
        info, values = compress_model(
            tuned.model,
            cfg,
            tuned.input_shape,
            paths.COMPRESSED_EXPORT / paths.EXPORT_STEM,
            dense_bytes=dense_bytes,
            test=data.test,
            device=device,
            data=data,
            finetune=tune,
            seed=seed,
        )
        metrics = {
            "scheme": cfg.scheme,
            "bits": cfg.bits,
            **values,
            "dense_test_accuracy": dense["test_accuracy"],
            "compressed_accuracy_drop": dense["test_accuracy"] - values["compressed_test_accuracy"],
        }
        atomic.write_json(paths.COMPRESS_METRICS, metrics)
        track.log_metrics({k: v for k, v in metrics.items() if k != "scheme"})
        track.log_artifacts([paths.COMPRESS_METRICS, info.path])
        print(
            f"compress: {cfg.scheme} {cfg.bits}-bit, {info.path} is {info.bytes / 1024:.1f} KiB, "
            f"{values['compression_factor']:.1f}x smaller than the dense fp32 export; test accuracy of the file "
            f"{values['compressed_test_accuracy']:.4f} (dense {dense['test_accuracy']:.4f})"
        )
