"""Writing an export: ``export_model`` chooses the format from the weights and writes one file.

- ``<path>.pt2`` for a structurally pruned model (filters or units removed: the network
  itself is smaller) and for a model with nothing to compress (a dense baseline, k = 0,
  so that "dense against export" compares two exports). It is torch.export's archive and
  loads without prunelab and without unpickling: ``torch.export.load(p).module()(x)``.
- ``<path>.sparse`` for a mask-pruned model (zeros in place in its weights): every Linear
  and Conv weight is stored the smallest of dense, CSR or bitmask + values
  (``container.py``), beside the rest of the network as a torch.export program.

Either is written atomically, sealed with its digest (``integrity.py``), and renamed into
place only once it loads back (``load_export``) and computes what the model computes.
The bytes written depend on the model alone: DVC hashes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from prunelab import atomic
from prunelab.export import codec, container, integrity, pt2
from prunelab.export.formats import PT2_FORMAT, SUFFIXES, VERSION
from prunelab.export.kernels import Kernels, Timer
from prunelab.export.load import ExportModule, load_export
from prunelab.train.evaluate import EVAL_BATCH

CHECK_TOLERANCE = 1e-4  # export_model's own check: max |logit difference| on a probe batch


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
    # the export as it was loaded back from the file (``load_export``) to be checked: a caller that
    # runs the file can use it instead of loading it again
    module: ExportModule | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, module: ExportModule) -> ExportInfo:
        """The info of a loaded export (``load_export``)."""
        path = Path(module.path)
        return cls(
            path,
            module.format,
            path.stat().st_size,
            module.input_shape,
            dict(module.storage),
            module.kernels,
            module.kernel_times,
            str(module.device),
        )


def _target(path_without_suffix: str | Path, fmt: str) -> Path:
    return Path(str(path_without_suffix) + SUFFIXES[fmt])


def export_model(
    model: nn.Module,
    input_shape: Sequence[int],
    path_without_suffix: str | Path,
    *,
    structural: bool,
    batch_sizes: Sequence[int] = (1, EVAL_BATCH),
    device: str | torch.device = "cpu",
    force: str | None = None,
    timer: Timer | None = None,
    shared: Mapping[str, codec.Shared] | None = None,
) -> ExportInfo:
    """Write ``model``'s export beside ``path_without_suffix`` (+ .pt2 or .sparse) and load it back.

    ``structural``: the model was pruned structurally, so it is written as a .pt2 (zeros in it,
    if any, stay dense). Otherwise each Linear and Conv weight is stored the smallest way;
    if any is stored sparse the file is a .sparse, else a .pt2. The file is written
    atomically, a stale file of the other format at the same path is removed, and the
    export is loaded back (verified) on ``device``, where the kernels are measured for
    ``batch_sizes`` (see ``load_export``), and checked against the model on a probe batch.

    ``shared``: layers quantized to shared weights (``prunelab.compress``), stored so
    (``codec.py``): the file is a .sparse of version 2, checked against the model with those
    weights put in (what the file holds), not against ``model``'s own.
    """
    import copy

    from prunelab.pruning.layers import weighted_layers
    from prunelab.pruning.masks import make_permanent

    shape = tuple(int(d) for d in input_shape)
    prepared = copy.deepcopy(model).cpu().eval()
    make_permanent(prepared)
    layers = weighted_layers(prepared)  # the weights the container may compress
    shared = dict(shared or {})
    with torch.no_grad():  # the file holds the shared values: so does what it is checked against
        for name, layer in shared.items():
            layers[name].weight.copy_(layer.dense().reshape(layers[name].weight.shape))
    storage = {} if structural else {name: container.choose_storage(m.weight) for name, m in layers.items()}
    storage |= dict.fromkeys(shared, container.SHARED)
    compressed = {name: s for name, s in storage.items() if s != container.DENSE}
    fmt = "sparse" if compressed else "pt2"
    target = _target(path_without_suffix, fmt)

    if fmt == "pt2":
        program = pt2.trace(prepared, shape)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                pt2.save(program, fh)
            integrity.seal_pt2(tmp, {"format": PT2_FORMAT, "version": VERSION, "input_shape": list(shape)})
    else:
        arrays = {
            name: (s, layers[name].weight.detach(), container.encode(layers[name].weight, s))
            for name, s in compressed.items()
            if s != container.SHARED
        }
        program = pt2.to_bytes(pt2.trace(prepared, shape, placeholders=compressed))
        data = container.pack(program, arrays, shape, shared)

        def write(tmp: Path) -> None:
            tmp.write_bytes(data)

    with atomic.atomic_path(target) as tmp:  # renamed only once it loads and computes what the model does
        write(tmp)
        module = load_export(tmp, device=device, batch_sizes=batch_sizes, force=force, timer=timer)
        _check_against(prepared if shared else model, module, shape)
    module.path = target
    _target(path_without_suffix, "pt2" if fmt == "sparse" else "sparse").unlink(missing_ok=True)  # stale
    info = ExportInfo.of(module)  # the file holds only its compressed layers' storage: name every layer's
    return ExportInfo(
        info.path,
        info.format,
        info.bytes,
        info.input_shape,
        storage if fmt == "sparse" else {},
        info.kernels,
        info.kernel_times,
        info.device,
        module,
    )


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
