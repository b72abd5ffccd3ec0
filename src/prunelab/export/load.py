"""Reading an export back: ``load_export`` verifies the file whole and loads it as an ``ExportModule``.

Either format is one file, verified whole before use: a truncated or modified file is one
``ExportError`` naming it (``integrity.py``). Neither is ever unpickled (``pt2.safe_load``).
Each Linear layer stored sparse runs as a ``sparse.SparseLinear``, its kernels chosen
here, per batch size, on the device that will run it (``kernels.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils._pytree import tree_unflatten

from prunelab import atomic
from prunelab.export import container, integrity, pt2, sparse
from prunelab.export.formats import PT2_FORMAT
from prunelab.export.integrity import refuse
from prunelab.export.kernels import Kernels, Timer, choose_kernels
from prunelab.train.evaluate import EVAL_BATCH


class ExportModule(nn.Module):
    """A loaded export: ``module(x)`` runs it. Always in eval mode (it was traced so)."""

    trainable = False  # a traced inference program: measure.epoch does not time training on it

    def __init__(
        self,
        program: nn.Module,
        *,
        path: Path,
        format: str,
        input_shape: tuple[int, ...],
        storage: Mapping[str, str],
        layers: Mapping[str, nn.Module],
    ):
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
            raise ValueError(
                f"{self.path}: expects inputs of shape (batch, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
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
        batches = sorted(
            {rows // layer.rows_per_image for layer in self.sparse_layers.values() for rows in layer.kernels}
        )
        return {b: self.kernels_at(b) for b in batches}

    def kernels_at(self, batch: int) -> dict[str, str]:
        return {name: layer.kernel_for(batch * layer.rows_per_image) for name, layer in self.sparse_layers.items()}

    def choose_kernels(
        self,
        batch_sizes: Sequence[int],
        *,
        force: str | None = None,
        timer: Timer | None = None,
        kernels: Kernels | None = None,
    ) -> Kernels:
        """Pick each sparse layer's kernel per batch size: forced, given, or measured (``timer``)."""
        choose_kernels(self, batch_sizes, force=force, timer=timer, kernels=kernels)
        return self.kernels


def _read_sparse(
    path: Path, data: bytes, int8: bool = False
) -> tuple[nn.Module, tuple[int, ...], dict[str, str], dict[str, nn.Module]]:
    """A .sparse file's program, its Linear weights stored sparse put back as ``SparseLinear`` layers."""
    program_bytes, shape, weights, storage, scales = container.unpack(path, data)
    program = pt2.safe_load(path, program_bytes)
    try:
        layers = sparse.route_through(program, weights, scales if int8 else None)
    except (AttributeError, RuntimeError) as exc:
        raise refuse(path, f"its weights do not fit its program ({atomic.reason(exc)})") from None
    if any(0 in p.stride() for p in program.parameters() if p.dim()):
        raise refuse(path, "its program has a placeholder weight that the file does not hold")
    return program, shape, storage, layers


def load_export(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    batch_sizes: Sequence[int] = (1, EVAL_BATCH),
    force: str | None = None,
    timer: Timer | None = None,
    kernels: Kernels | None = None,
    int8: bool = False,
) -> ExportModule:
    """Verify the export at ``path`` whole, load it on ``device`` and choose its kernels.

    The format is read from the file's first bytes. A missing, truncated, modified or
    foreign file is one ``ExportError`` naming it; a device that is not there is the
    ``train.device`` error (``training.resolve_device``). Each sparse layer's kernel is
    measured here for each of ``batch_sizes`` (other batch sizes take the nearest
    measured one), unless ``force`` names one or ``kernels`` gives them.

    ``int8``: layers stored as int8 per channel (``compress.scheme: linear``, 8 bits) may also
    run PyTorch's dynamic int8 kernel on the CPU, where it is measured faster. It rounds the
    activations to 8 bits, so outputs are no longer the stored weights' in float arithmetic
    (off by about 1 % of the largest logit): off unless asked for.
    """
    from prunelab.measure.timing import device_of

    target = device_of(device)
    path = Path(path)
    data = integrity.read_bytes(path)
    fmt = integrity.format_of(data)
    if fmt == "pt2":
        manifest, _ = integrity.read_pt2(path, data)
        info = pt2.info_of(manifest)
        integrity.check_format(path, info, PT2_FORMAT)
        try:
            shape = tuple(int(d) for d in info["input_shape"])
        except (KeyError, TypeError, ValueError):
            raise refuse(path, "its manifest has no valid input_shape") from None
        program, storage, layers = pt2.safe_load(path, data), {}, {}
    elif fmt == "sparse":
        program, shape, storage, layers = _read_sparse(path, data, int8 and target.type == "cpu")
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
