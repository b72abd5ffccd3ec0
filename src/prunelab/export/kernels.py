"""Which kernel each sparse layer (``sparse.SparseLinear``) runs, per batch size: chosen by measurement.

The choice is measured when the file is *loaded* (``load_export``), on the machine and
device that will run it, for the batch sizes asked: which kernel wins depends on the
processor, its thread count and the batch size, not on the weights alone, and measuring
at load keeps the file itself byte-reproducible (DVC hashes it). ``force`` pins every
layer to one kernel; ``timer`` replaces the measurement (tests inject timings);
``kernels`` reuses choices measured before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from prunelab.export import sparse
from prunelab.measure.timing import KERNELS, QUICK_KERNELS, TimingPolicy  # the one timing policy

WHOLE = "<whole model>"  # kernel_times' entry for the forward pass with the chosen kernels against all-dense
SPARSE_WINS = 0.95  # the dense kernel gives way only to one measured at least 5 % faster: noise does not flip it

# timer(layer, batch, {kernel: run}) -> {kernel: seconds per call}; run() executes the layer once with
# that kernel, on the layer's input at that batch size; a kernel left out of the answer is not chosen
Timer = Callable[[str, int, Mapping[str, Callable[[], Any]]], Mapping[str, float]]
Kernels = dict[int, dict[str, str]]  # batch size -> {layer: "dense", "sparse" or "rows"}


def choose_kernels(
    module: Any,  # an export.load.ExportModule (which calls this: no import back)
    batch_sizes: Sequence[int],
    *,
    force: str | None = None,
    timer: Timer | None = None,
    kernels: Kernels | None = None,
) -> None:
    """Pick the kernel of each of ``module``'s sparse layers per batch size: forced, given, or measured (``timer``)."""
    if force not in (None, *sparse.KERNELS):
        raise ValueError(f"force={force!r}: expected None or one of {', '.join(map(repr, sparse.KERNELS))}")
    # batch sizes as JSON keys are strings: ExportInfo.kernels may have been written out and read back
    kernels = {int(b): dict(k) for b, k in (kernels or {}).items()}
    timer = timer or default_timer(module.device)
    module.kernel_times = {}
    for name, layer in module.sparse_layers.items():
        layer.keep(set(sparse.KERNELS))
        layer.kernels = {}
        for batch in batch_sizes:
            rows = batch * layer.rows_per_image
            given = kernels.get(batch, {}).get(name)
            if force is not None:  # where the layer cannot run it (rows without empty rows): dense
                given = force if force in layer.available else sparse.DENSE_KERNEL
            if given is not None:
                if given not in layer.available:
                    raise ValueError(f"kernel {given!r} for {name} at batch {batch}: expected one of {layer.available}")
                layer.kernels[rows] = given
            else:
                # laid out as a sparse layer's output is ((in, rows) in memory): what a layer
                # in a chain of sparse layers receives, and what costs the dense kernel nothing
                x = torch.rand(
                    layer.in_features,
                    rows,
                    device=module.device,
                    generator=torch.Generator(module.device).manual_seed(batch),
                ).t()
                runs = {k: (lambda k=k, x=x, layer=layer: layer.run(k, x)) for k in layer.available}
                times = dict(timer(name, batch, runs))
                module.kernel_times.setdefault(batch, {})[name] = times
                layer.kernels[rows] = fastest(times)
    _check_whole(module, batch_sizes, timer)
    for layer in module.sparse_layers.values():
        layer.keep(set(layer.kernels.values()))
    sparse.set_routes(module.program, module.sparse_layers.values())


@torch.inference_mode()
def _check_whole(module: Any, batch_sizes: Sequence[int], timer: Timer) -> None:
    """Where layers chose sparse kernels by measurement, time the whole forward pass with
    them against all-dense; where they do not win together, the batch size runs dense.

    Each layer was timed alone: the layout a sparse product hands the next layer, and
    the caches, cost more in the chain than in isolation (measured: a tiny MLP at batch
    1,024 ran at half the dense speed on kernels each faster alone).
    """
    measured = {b for b, times in module.kernel_times.items() if times}
    sparse.set_routes(module.program, module.sparse_layers.values(), sparse_everywhere=True)
    for batch in (b for b in batch_sizes if b in measured):
        rows = {name: batch * layer.rows_per_image for name, layer in module.sparse_layers.items()}
        chosen = {name: layer.kernels[rows[name]] for name, layer in module.sparse_layers.items()}
        if set(chosen.values()) == {sparse.DENSE_KERNEL}:
            continue
        x = torch.rand(
            batch,
            *module.input_shape,
            device=module.device,
            generator=torch.Generator(module.device).manual_seed(batch),
        )

        def run_with(plan: Mapping[str, str], rows=rows, x=x) -> Callable[[], Any]:
            def run() -> Any:
                for name, layer in module.sparse_layers.items():
                    layer._chosen[rows[name]] = plan[name]  # the cache kernel_for reads: no reset
                return module(x)

            return run

        dense = dict.fromkeys(chosen, sparse.DENSE_KERNEL)
        times = dict(timer(WHOLE, batch, {"chosen": run_with(chosen), sparse.DENSE_KERNEL: run_with(dense)}))
        module.kernel_times[batch][WHOLE] = times
        keep = "chosen" not in times or fastest(times) == "chosen"  # a timer that skips it keeps the choice
        for name, layer in module.sparse_layers.items():
            layer.kernels = {**layer.kernels, rows[name]: chosen[name] if keep else sparse.DENSE_KERNEL}


def fastest(times: Mapping[str, float]) -> str:
    """The kernel to run: the fastest, but another than dense only if at least 5 % faster."""
    dense = times.get(sparse.DENSE_KERNEL, math.inf)
    other = min((k for k in times if k != sparse.DENSE_KERNEL), key=lambda k: times[k], default=None)
    return other if other is not None and times[other] < SPARSE_WINS * dense else sparse.DENSE_KERNEL


def default_timer(device: torch.device, policy: TimingPolicy = KERNELS) -> Timer:
    """Median seconds per call of each kernel, interleaved (``prunelab.measure.timing.interleaved``),
    as carefully as ``policy`` says.

    The pipeline's sweep, which exports every point, takes fewer and shorter samples
    (``quick_timer``); the 5 % margin a sparse kernel must win by (``SPARSE_WINS``) keeps
    noise from choosing it where it does not help.
    """
    from prunelab.measure.timing import interleaved

    def timer(layer: str, batch: int, runs: Mapping[str, Callable[[], Any]]) -> dict[str, float]:
        with torch.inference_mode():
            return {k: t.median for k, t in interleaved(runs, device=device, **policy.interleaved_args()).items()}

    return timer


def quick_timer(device: str | torch.device = "cpu") -> Timer:
    """``default_timer`` with the ``QUICK_KERNELS`` preset (every sweep point's export)."""
    from prunelab.measure.timing import device_of

    return default_timer(device_of(device), QUICK_KERNELS)
