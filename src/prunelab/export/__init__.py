"""Exports in which what pruning buys is real: a smaller file and a faster forward pass.

``export_model(model, input_shape, path_without_suffix, structural=...)`` writes one file:

- ``<path>.pt2`` for a structurally pruned model (filters or units removed: the network
  itself is smaller) and for a model with nothing to compress (a dense baseline, k = 0,
  so that "dense against export" compares two exports). It is torch.export's archive and
  loads without prunelab and without unpickling: ``torch.export.load(p).module()(x)``.
- ``<path>.sparse`` for a mask-pruned model (zeros in place in its weights): every Linear
  and Conv weight is stored the smallest of dense, CSR or bitmask + values
  (``sparse.py``), beside the rest of the network as a torch.export program. On load each
  Linear layer stored sparse runs, per batch size, the kernel measured fastest there: the
  CSR product, the product of its non-empty rows (unit masks), or the dense one it falls
  back to; conv layers run dense.

Both formats are one file written atomically, and verified whole before use: a
truncated or modified file is one ``ExportError`` naming it (``integrity.py``). Neither
is ever unpickled.

The kernel choice is measured when the file is *loaded* (``load_export``), on the
machine and device that will run it, for the batch sizes asked: which kernel wins depends
on the processor, its thread count and the batch size, not on the weights alone, and
measuring at load keeps the file itself byte-reproducible (DVC hashes it). ``force``
pins every layer to one kernel; ``timer`` replaces the measurement (tests inject timings);
``kernels`` reuses choices measured before.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_unflatten

from prunelab import atomic
from prunelab.train.evaluate import EVAL_BATCH
from prunelab.export import integrity, pt2, sparse
from prunelab.export.integrity import ExportError, refuse

SUFFIXES = {"pt2": ".pt2", "sparse": ".sparse"}
PT2_FORMAT, SPARSE_FORMAT, VERSION = "prunelab-pt2", "prunelab-sparse", 1
WHOLE = "<whole model>"  # kernel_times' entry for the forward pass with the chosen kernels against all-dense
SPARSE_WINS = 0.95  # the dense kernel gives way only to one measured at least 5 % faster: noise does not flip it
CHECK_TOLERANCE = 1e-4  # export_model's own check: max |logit difference| on a probe batch

# timer(layer, batch, {kernel: run}) -> {kernel: seconds per call}; run() executes the layer once with
# that kernel, on the layer's input at that batch size; a kernel left out of the answer is not chosen
Timer = Callable[[str, int, Mapping[str, Callable[[], Any]]], Mapping[str, float]]
Kernels = dict[int, dict[str, str]]  # batch size -> {layer: "dense", "sparse" or "rows"}


@dataclass(frozen=True)
class ExportInfo:
    """What ``export_model`` wrote, and the kernels the export runs here."""

    path: Path
    format: str  # "pt2" or "sparse"
    bytes: int  # size of the file on disk
    input_shape: tuple[int, ...]
    storage: dict[str, str] = field(default_factory=dict)  # layer -> dense, csr or bitmask (sparse format)
    kernels: Kernels = field(default_factory=dict)  # per batch size, measured on ``device`` at load
    kernel_times: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)  # seconds per call
    device: str = "cpu"

    @classmethod
    def of(cls, module: ExportModule) -> ExportInfo:
        """The info of a loaded export (``load_export``)."""
        path = Path(module.path)
        return cls(path, module.format, path.stat().st_size, module.input_shape, dict(module.storage),
                   module.kernels, module.kernel_times, str(module.device))


class ExportModule(nn.Module):
    """A loaded export: ``module(x)`` runs it. Always in eval mode (it was traced so)."""

    trainable = False  # a traced inference program: measure.efficiency does not time training on it

    def __init__(self, program: nn.Module, *, path: Path, format: str, input_shape: tuple[int, ...],
                 storage: Mapping[str, str], layers: Mapping[str, nn.Module]):
        super().__init__()
        self.program = program
        self._out_spec = pt2.streamline(program)
        self.path, self.format, self.input_shape = path, format, tuple(input_shape)
        self.storage = dict(storage)
        self.sparse_layers = dict(layers)  # layer name -> SparseLinear (inside ``program``)
        self.kernel_times: dict[int, dict[str, dict[str, float]]] = {}
        self.training = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"{self.path}: expects inputs of shape (batch, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")
        # forward() itself: the program's module hooks only serve inputs that are modules
        outputs = self.program.forward(x)
        if self._out_spec is None or self._out_spec.is_leaf():
            return outputs[0]
        return tree_unflatten(list(outputs), self._out_spec)

    def train(self, mode: bool = True) -> ExportModule:
        # the program is a traced eval-mode graph: there is no train mode to switch to
        # (torch's exported modules refuse .eval()); accept the call so evaluate() works
        self.training = mode
        return self

    @property
    def device(self) -> torch.device:
        for tensor in (*self.program.parameters(), *self.program.buffers()):
            return tensor.device
        return torch.device("cpu")

    @property
    def kernels(self) -> Kernels:
        """Per measured batch size, the kernel each sparse layer runs."""
        batches = sorted({rows // layer.rows_per_image for layer in self.sparse_layers.values()
                          for rows in layer.kernels})
        return {b: self.kernels_at(b) for b in batches}

    def kernels_at(self, batch: int) -> dict[str, str]:
        return {name: layer.kernel_for(batch * layer.rows_per_image) for name, layer in self.sparse_layers.items()}

    def choose_kernels(self, batch_sizes: Sequence[int], *, force: str | None = None,
                       timer: Timer | None = None, kernels: Kernels | None = None) -> Kernels:
        """Pick each sparse layer's kernel per batch size: forced, given, or measured (``timer``)."""
        if force not in (None, *sparse.KERNELS):
            raise ValueError(f"force={force!r}: expected None or one of {', '.join(map(repr, sparse.KERNELS))}")
        # batch sizes as JSON keys are strings: ExportInfo.kernels may have been written out and read back
        kernels = {int(b): dict(k) for b, k in (kernels or {}).items()}
        timer = timer or default_timer(self.device)
        self.kernel_times = {}
        for name, layer in self.sparse_layers.items():
            layer.keep(set(sparse.KERNELS))
            layer.kernels = {}
            for batch in batch_sizes:
                rows = batch * layer.rows_per_image
                given = kernels.get(batch, {}).get(name)
                if force is not None:  # where the layer cannot run it (rows without empty rows): dense
                    given = force if force in layer.available else sparse.DENSE_KERNEL
                if given is not None:
                    if given not in layer.available:
                        raise ValueError(f"kernel {given!r} for {name} at batch {batch}: "
                                         f"expected one of {layer.available}")
                    layer.kernels[rows] = given
                else:
                    # laid out as a sparse layer's output is ((in, rows) in memory): what a layer
                    # in a chain of sparse layers receives, and what costs the dense kernel nothing
                    x = torch.rand(layer.in_features, rows, device=self.device,
                                   generator=torch.Generator(self.device).manual_seed(batch)).t()
                    runs = {k: (lambda k=k, x=x: layer.run(k, x)) for k in layer.available}
                    times = dict(timer(name, batch, runs))
                    self.kernel_times.setdefault(batch, {})[name] = times
                    layer.kernels[rows] = fastest(times)
        self._check_whole(batch_sizes, timer)
        for layer in self.sparse_layers.values():
            layer.keep(set(layer.kernels.values()))
        sparse.set_routes(self.program, self.sparse_layers.values())
        return self.kernels

    @torch.inference_mode()
    def _check_whole(self, batch_sizes: Sequence[int], timer: Timer) -> None:
        """Where layers chose sparse kernels by measurement, time the whole forward pass with
        them against all-dense; where they do not win together, the batch size runs dense.

        Each layer was timed alone: the layout a sparse product hands the next layer, and
        the caches, cost more in the chain than in isolation (measured: a tiny MLP at batch
        1,024 ran at half the dense speed on kernels each faster alone).
        """
        measured = {b for b, times in self.kernel_times.items() if times}
        sparse.set_routes(self.program, self.sparse_layers.values(), sparse_everywhere=True)
        for batch in (b for b in batch_sizes if b in measured):
            rows = {name: batch * layer.rows_per_image for name, layer in self.sparse_layers.items()}
            chosen = {name: layer.kernels[rows[name]] for name, layer in self.sparse_layers.items()}
            if set(chosen.values()) == {sparse.DENSE_KERNEL}:
                continue
            x = torch.rand(batch, *self.input_shape, device=self.device,
                           generator=torch.Generator(self.device).manual_seed(batch))

            def run_with(plan: Mapping[str, str]) -> Callable[[], Any]:
                def run() -> Any:
                    for name, layer in self.sparse_layers.items():
                        layer._chosen[rows[name]] = plan[name]  # the cache kernel_for reads: no reset
                    return self(x)
                return run

            dense = dict.fromkeys(chosen, sparse.DENSE_KERNEL)
            times = dict(timer(WHOLE, batch, {"chosen": run_with(chosen), sparse.DENSE_KERNEL: run_with(dense)}))
            self.kernel_times[batch][WHOLE] = times
            keep = "chosen" not in times or fastest(times) == "chosen"  # a timer that skips it keeps the choice
            for name, layer in self.sparse_layers.items():
                layer.kernels = {**layer.kernels, rows[name]: chosen[name] if keep else sparse.DENSE_KERNEL}


def fastest(times: Mapping[str, float]) -> str:
    """The kernel to run: the fastest, but another than dense only if at least 5 % faster."""
    dense = times.get(sparse.DENSE_KERNEL, math.inf)
    other = min((k for k in times if k != sparse.DENSE_KERNEL), key=lambda k: times[k], default=None)
    return other if other is not None and times[other] < SPARSE_WINS * dense else sparse.DENSE_KERNEL


def default_timer(device: torch.device, rounds: int = 7, max_s: float = 1.0,
                  min_sample_s: float | None = None) -> Timer:
    """Median seconds per call of each kernel, interleaved (``prunelab.measure.timing.interleaved``).

    The pipeline's sweep, which exports every point, takes fewer and shorter samples
    (``quick_timer``); the 5 % margin a sparse kernel must win by (``SPARSE_WINS``) keeps
    noise from choosing it where it does not help.
    """
    from prunelab.measure.timing import MIN_SAMPLE_S, interleaved

    sample = MIN_SAMPLE_S if min_sample_s is None else min_sample_s

    def timer(layer: str, batch: int, runs: Mapping[str, Callable[[], Any]]) -> dict[str, float]:
        with torch.inference_mode():
            return {k: t.median for k, t in interleaved(runs, device=device, rounds=rounds, max_s=max_s,
                                                        min_sample_s=sample).items()}

    return timer


def quick_timer(device: str | torch.device = "cpu") -> Timer:
    """``default_timer`` with 5 rounds of samples of at least 10 ms: about 0.2 s per layer and batch size."""
    from prunelab.measure.timing import device_of

    return default_timer(device_of(device), rounds=5, max_s=0.5, min_sample_s=0.01)


# -- writing -------------------------------------------------------------------------------

def _layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Linear and Conv layer with a weight, by name: the weights the container may compress."""
    from prunelab.pruning.layers import prunable_types

    return {name: m for name, m in model.named_modules()
            if isinstance(m, prunable_types()) and isinstance(getattr(m, "weight", None), torch.Tensor)}


def _target(path_without_suffix: str | Path, fmt: str) -> Path:
    return Path(str(path_without_suffix) + SUFFIXES[fmt])


def _container(program: bytes, arrays: Mapping[str, tuple[str, torch.Tensor, dict[str, torch.Tensor]]],
               input_shape: tuple[int, ...]) -> bytes:
    """The .sparse file's bytes: the program (zlib), then each layer's arrays, described by the header."""
    program_raw = len(program)
    program = zlib.compress(program, 9)  # the graph is JSON: a tenth of its size, a fifth of a small file
    chunks: list[bytes] = [program]
    offset = len(program)

    def put(tensor: torch.Tensor) -> dict[str, Any]:
        nonlocal offset
        raw = tensor.contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        entry = {"dtype": sparse.dtype_name(tensor.dtype), "shape": list(tensor.shape), "offset": offset,
                 "bytes": len(raw)}
        chunks.append(raw)
        offset += len(raw)
        return entry

    layers = {name: {"storage": storage, "shape": list(weight.shape), "dtype": sparse.dtype_name(weight.dtype),
                     "nnz": int(weight.count_nonzero()), "arrays": {k: put(v) for k, v in parts.items()}}
              for name, (storage, weight, parts) in arrays.items()}
    header = {"format": SPARSE_FORMAT, "version": VERSION, "input_shape": list(input_shape),
              "program": {"offset": 0, "bytes": len(program), "zlib_of": program_raw}, "layers": layers}
    return integrity.pack_container(header, b"".join(chunks))


def export_model(model: nn.Module, input_shape: Sequence[int], path_without_suffix: str | Path, *,
                 structural: bool, batch_sizes: Sequence[int] = (1, EVAL_BATCH), device: str | torch.device = "cpu",
                 force: str | None = None, timer: Timer | None = None) -> ExportInfo:
    """Write ``model``'s export beside ``path_without_suffix`` (+ .pt2 or .sparse) and load it back.

    ``structural``: the model was pruned structurally, so it is written as a .pt2 (zeros in it,
    if any, stay dense). Otherwise each Linear and Conv weight is stored the smallest way;
    if any is stored sparse the file is a .sparse, else a .pt2. The file is written
    atomically, a stale file of the other format at the same path is removed, and the
    export is loaded back (verified) on ``device``, where the kernels are measured for
    ``batch_sizes`` (see ``load_export``), and checked against the model on a probe batch.
    """
    import copy

    from prunelab.pruning.masks import make_permanent

    shape = tuple(int(d) for d in input_shape)
    prepared = copy.deepcopy(model).cpu().eval()
    make_permanent(prepared)
    storage = {} if structural else {name: sparse.choose_storage(m.weight) for name, m in _layers(prepared).items()}
    compressed = {name: s for name, s in storage.items() if s != sparse.DENSE}
    fmt = "sparse" if compressed else "pt2"
    target = _target(path_without_suffix, fmt)

    if fmt == "pt2":
        program = pt2.trace(prepared, shape)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                pt2.save(program, fh)
            integrity.seal_pt2(tmp, {"format": PT2_FORMAT, "version": VERSION, "input_shape": list(shape)})
    else:
        layers = _layers(prepared)
        arrays = {name: (s, layers[name].weight.detach(), sparse.encode(layers[name].weight, s))
                  for name, s in compressed.items()}
        data = _container(pt2.to_bytes(pt2.trace(prepared, shape, placeholders=compressed)), arrays, shape)

        def write(tmp: Path) -> None:
            tmp.write_bytes(data)

    with atomic.atomic_path(target) as tmp:  # renamed only once it loads and computes what the model does
        write(tmp)
        module = load_export(tmp, device=device, batch_sizes=batch_sizes, force=force, timer=timer)
        _check_against(model, module, shape)
    module.path = target
    _target(path_without_suffix, "pt2" if fmt == "sparse" else "sparse").unlink(missing_ok=True)  # stale
    info = ExportInfo.of(module)  # the file holds only its compressed layers' storage: name every layer's
    return ExportInfo(info.path, info.format, info.bytes, info.input_shape, storage if fmt == "sparse" else {},
                      info.kernels, info.kernel_times, info.device)


@torch.inference_mode()
def _check_against(model: nn.Module, module: ExportModule, shape: tuple[int, ...]) -> None:
    """The export computes what the model computes (a bug here is not the user's input: RuntimeError)."""
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(1))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        expected = model(x.to(device)).float().cpu()
    finally:
        model.train(was_training)
    got = module(x.to(module.device)).float().cpu()
    diff = float((got - expected).abs().max())
    if not diff <= CHECK_TOLERANCE * max(1.0, float(expected.abs().max())):
        raise RuntimeError(f"{module.path}: the export's outputs differ from the model's by up to {diff:.3g}")


# -- reading -------------------------------------------------------------------------------

def _tensor(payload: memoryview, entry: Mapping[str, Any]) -> torch.Tensor:
    dtype = sparse.torch_dtype(entry["dtype"])
    shape = [int(d) for d in entry["shape"]]
    offset, size = int(entry["offset"]), int(entry["bytes"])
    itemsize = torch.empty((), dtype=dtype).element_size()
    if offset < 0 or offset + size > len(payload) or size != math.prod(shape) * itemsize:
        raise ValueError(f"an array at {offset}+{size} does not fit the payload or its shape {shape}")
    if size == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(payload[offset:offset + size]), dtype=dtype).reshape(shape)


def _read_sparse(path: Path, data: bytes) -> tuple[nn.Module, tuple[int, ...], dict[str, str], dict[str, nn.Module]]:
    header, payload = integrity.unpack_container(path, data)
    if header.get("format") != SPARSE_FORMAT or header.get("version") != VERSION:
        raise refuse(path, f"format {header.get('format')!r} version {header.get('version')!r}, "
                     f"this prunelab reads {SPARSE_FORMAT!r} version {VERSION}")
    try:
        shape = tuple(int(d) for d in header["input_shape"])
        span = header["program"]
        size = int(span["zlib_of"])  # decompressed no further than announced: no zlib bomb
        inflate = zlib.decompressobj()
        program_bytes = inflate.decompress(payload[int(span["offset"]):int(span["offset"]) + int(span["bytes"])], size)
        if len(program_bytes) != size or not inflate.eof:
            raise ValueError(f"its program does not inflate to the {size} bytes announced")
        weights, storage = {}, {}
        for name, layer in header["layers"].items():
            arrays = {k: _tensor(payload, v) for k, v in layer["arrays"].items()}
            if layer["dtype"] not in sparse.FLOAT_DTYPES:
                raise ValueError(f"layer {name} has dtype {layer['dtype']!r}, not a float type")
            weights[name] = sparse.decode(layer["storage"], arrays, tuple(int(d) for d in layer["shape"]),
                                          sparse.torch_dtype(layer["dtype"]))
            storage[name] = layer["storage"]
    except (KeyError, TypeError, ValueError, RuntimeError, zlib.error) as exc:
        raise refuse(path, f"its header does not describe valid contents ({atomic.reason(exc)})") from None
    program = pt2.safe_load(path, program_bytes)
    try:
        layers = sparse.route_through(program, weights)
    except (AttributeError, RuntimeError) as exc:
        raise refuse(path, f"its weights do not fit its program ({atomic.reason(exc)})") from None
    if any(0 in p.stride() for p in program.parameters() if p.dim()):
        raise refuse(path, "its program has a placeholder weight that the file does not hold")
    return program, shape, storage, layers


def load_export(path: str | Path, *, device: str | torch.device = "cpu",
                batch_sizes: Sequence[int] = (1, EVAL_BATCH), force: str | None = None,
                timer: Timer | None = None, kernels: Kernels | None = None) -> ExportModule:
    """Verify the export at ``path`` whole, load it on ``device`` and choose its kernels.

    The format is read from the file's first bytes. A missing, truncated, modified or
    foreign file is one ``ExportError`` naming it; a device that is not there is the
    ``train.device`` error (``training.resolve_device``). Each sparse layer's kernel is
    measured here for each of ``batch_sizes`` (other batch sizes take the nearest
    measured one), unless ``force`` names one or ``kernels`` gives them.
    """
    from prunelab.measure.timing import device_of

    target = device_of(device)
    path = Path(path)
    data = integrity.read_bytes(path)
    fmt = integrity.format_of(data)
    if fmt == "pt2":
        manifest, _ = integrity.read_pt2(path, data)
        info = pt2.info_of(manifest)
        if info.get("format") != PT2_FORMAT or info.get("version") != VERSION:
            raise refuse(path, f"format {info.get('format')!r} version {info.get('version')!r}, "
                         f"this prunelab reads {PT2_FORMAT!r} version {VERSION}")
        try:
            shape = tuple(int(d) for d in info["input_shape"])
        except (KeyError, TypeError, ValueError):
            raise refuse(path, "its manifest has no valid input_shape") from None
        program, storage, layers = pt2.safe_load(path, data), {}, {}
    elif fmt == "sparse":
        program, shape, storage, layers = _read_sparse(path, data)
    else:
        raise refuse(path, "neither a .pt2 archive nor a prunelab sparse export")
    module = ExportModule(program, path=path, format=fmt, input_shape=shape, storage=storage, layers=layers)
    module.to(target)
    _probe_rows(module)
    module.choose_kernels(batch_sizes, force=force, timer=timer, kernels=kernels)
    return module


@torch.inference_mode()
def _probe_rows(module: ExportModule) -> None:
    """How many input rows each sparse layer sees per image (1 after a flatten)."""
    seen: dict[str, int] = {}

    def record(name: str):
        return lambda layer, args: seen.__setitem__(name, args[0].numel() // args[0].shape[-1])

    hooks = [layer.register_forward_pre_hook(record(name)) for name, layer in module.sparse_layers.items()]
    try:
        module(torch.zeros(1, *module.input_shape, device=module.device))
    finally:
        for hook in hooks:
            hook.remove()
    for name, layer in module.sparse_layers.items():
        layer.rows_per_image = max(seen.get(name, 1), 1)


__all__ = ["ExportError", "ExportInfo", "ExportModule", "SUFFIXES", "export_model", "load_export", "quick_timer"]
