"""The model as a torch.export program: traced here, loaded back only after it is checked.

``trace`` exports the model in eval mode on the CPU with a dynamic batch dimension, so
one file serves batch 1 and the evaluation batch. Layers whose weights the sparse
container stores instead get a placeholder weight of the right shape whose storage is a
single zero (stride 0): 4 bytes in the archive, replaced when the container is loaded.

``safe_load`` is the only place an archive is deserialised. ``torch.export.load`` falls
back to unpickling for some entries (tensor subclasses, opaque constants, sample inputs
that ``weights_only`` refuses), so an archive is first checked against what prunelab
writes: known entries only, no pickled weight or constant, no sample inputs.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunelab import atomic
from prunelab.export.integrity import MANIFEST, refuse

if TYPE_CHECKING:
    from torch import nn

# entries of an archive as torch.export.save writes it (below its top folder), and ours
_KNOWN = ("archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id", MANIFEST)
_KNOWN_DIRS = ("models/", "data/weights/", "data/constants/", "data/sample_inputs/")
_TRACE_BATCH = 2  # torch.export specialises sizes 0 and 1: trace at 2, declare the batch dynamic


def trace(model: nn.Module, input_shape: tuple[int, ...], placeholders: Collection[str] = ()):
    """torch.export's program of ``model`` (a copy: eval mode, on the CPU, pruning made permanent)."""
    import torch
    from torch import nn

    from prunelab.pruning.masks import make_permanent

    copy_ = copy.deepcopy(model).cpu().eval()
    make_permanent(copy_)  # a mask still attached would be traced as weight_orig * weight_mask
    for name in placeholders:
        layer = copy_.get_submodule(name)
        shape, dtype = layer.weight.shape, layer.weight.dtype
        layer.weight = nn.Parameter(torch.zeros((), dtype=dtype).expand(shape), requires_grad=False)
    example = torch.rand(_TRACE_BATCH, *input_shape, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.export.export(copy_, (example,), dynamic_shapes=({0: batch},), strict=False)
    program.example_inputs = None  # not saved: torch reads them back with a pickle fallback
    for node in program.graph.nodes:
        # the source lines that made each node, with this checkout's file paths: a file that
        # depended on where the code lives would not be byte-reproducible across clones
        node.meta.pop("stack_trace", None)
    return program


def save(program, fh) -> None:
    """``torch.export.save`` to an open file (a file object fixes the archive's folder name)."""
    import torch

    with warnings.catch_warnings():
        # a placeholder's one-element storage is "not a complete tensor": intended
        warnings.filterwarnings("ignore", message="No complete tensor found")
        torch.export.save(program, fh)


def to_bytes(program) -> bytes:
    buffer = io.BytesIO()
    save(program, buffer)
    return buffer.getvalue()


def _check_safe(path: str | Path, archive: zipfile.ZipFile) -> None:
    """Refuse an archive holding anything ``torch.export.load`` would unpickle."""
    for name in archive.namelist():
        inner = name.split("/", 1)[1] if "/" in name else ""
        if inner not in _KNOWN and not inner.startswith(_KNOWN_DIRS):
            raise refuse(path, f"its archive holds {name}, which prunelab never writes")
        if inner.startswith("data/sample_inputs/") and archive.getinfo(name).file_size:
            raise refuse(
                path, f"its archive holds sample inputs ({name}), which torch may unpickle and prunelab never writes"
            )
        if inner.endswith("_config.json") and inner.startswith(("data/weights/", "data/constants/")):
            config = json.loads(archive.read(name).decode()).get("config", {})
            for key, entry in config.items():
                raw = str(entry.get("path_name", "")).startswith(("weight_", "tensor_"))  # not custom/opaque objects
                if entry.get("use_pickle") or not raw:
                    raise refuse(
                        path,
                        f"its archive stores {key} as a pickled object, which prunelab never "
                        "writes and never unpickles",
                    )


def safe_load(path: str | Path, data: bytes):
    """The program in ``data`` (a .pt2 archive's bytes) as a callable GraphModule, after ``_check_safe``."""
    import torch

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _check_safe(path, archive)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(io.BytesIO(data))
        return program.module(check_guards=False)
    except (zipfile.BadZipFile, ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise refuse(path, f"its program is not a valid torch.export archive ({atomic.reason(exc)})") from None
    except RuntimeError as exc:  # torch's deserialiser: a program this torch cannot read
        raise refuse(path, f"torch.export could not load its program ({atomic.reason(exc)})") from None


def streamline(module) -> Any:
    """Strip per-call Python work from an unlifted program; returns its output's pytree spec.

    torch's exported module validates every input against the traced constraints and
    flattens and unflattens inputs and outputs as pytrees: about 0.1 ms per call, a third
    of a small network's forward pass at batch 1. ``ExportModule`` checks the input's
    shape itself, calls ``forward`` with one tensor, and rebuilds the output from the spec.
    """
    import torch.fx

    module.validate_inputs = False
    spec = getattr(getattr(module.graph._codegen, "pytree_info", None), "out_spec", None)
    module.graph.set_codegen(torch.fx.graph.CodeGen())  # forward(self, input) -> tuple of outputs
    _fold_views(module)
    module.recompile()
    return spec


def _fold_views(module) -> None:
    """Views of stored tensors (Standardize's mean[:, None, None]) computed once, not per call."""
    import torch

    aten = torch.ops.aten
    views = {
        aten.unsqueeze.default,
        aten.squeeze.dim,
        aten.view.default,
        aten.reshape.default,
        aten.t.default,
        aten.transpose.int,
        aten.permute.default,
        aten.expand.default,
    }
    graph = module.graph
    for i, node in enumerate(list(graph.nodes)):
        if node.op != "call_function" or node.target not in views:
            continue
        source = node.args[0]
        if not (isinstance(source, torch.fx.Node) and source.op == "get_attr") or any(
            isinstance(a, torch.fx.Node) for a in (*node.args[1:], *node.kwargs.values())
        ):
            continue
        name = f"_folded_{i}"
        module.register_buffer(
            name, node.target(_attr(module, source.target), *node.args[1:], **node.kwargs), persistent=False
        )
        with graph.inserting_before(node):
            folded = graph.get_attr(name)
        node.replace_all_uses_with(folded)
        graph.erase_node(node)
        if not source.users:
            graph.erase_node(source)
    graph.lint()


def _attr(module, target: str):
    owner, _, name = target.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, name)


def info_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """What prunelab recorded beside the program (everything in the manifest but the digests)."""
    return {k: v for k, v in manifest.items() if k != "entries"}
