"""Exports that other tools load: ONNX (any ONNX runtime) and safetensors (weights, masks, config).

prunelab's own exports (``.pt2``, ``.sparse``) make pruning pay off in size and speed, but
they need torch, or prunelab itself, to run. These two trade that for reach:

- ``write_onnx``: the network as an ONNX graph, the batch dimension dynamic, every weight
  inside the one file. Zeros stay dense: the file is as big as a dense network of the same
  shape (a structurally pruned model is smaller, a mask-pruned one is not).
- ``write_safetensors`` / ``load_safetensors``: the state dict, dense, masks folded in;
  the masks themselves as bool tensors ``mask.<layer>``; and what rebuilds the model (its
  config, input shape and class count: JSON strings in the metadata, which holds strings only).

Each file is renamed into place only once it loads back and computes what the model does.
A safetensors file carries the SHA-256 of its header and tensors in its metadata: a truncated
or modified file is one ``ExportError`` naming it (safetensors checks offsets, not contents).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunelab import atomic
from prunelab.errors import PrunelabError
from prunelab.export.integrity import ExportError
from prunelab.export.write import CHECK_TOLERANCE
from prunelab.train.checkpoint import Checkpoint

SAFETENSORS_FORMAT, SAFETENSORS_VERSION = "prunelab-safetensors", 1
MASK_PREFIX = "mask."  # a mask's tensor name: mask.<layer>, beside the state dict's <layer>.weight
INPUT, OUTPUT = "input", "logits"  # the ONNX graph's input and output names
ONNX_LIMIT = 2**31  # protobuf's limit on one message: larger weights would need external data files
TRACE_BATCH, PROBE_BATCH = 2, 5  # checked at another batch size than traced: the batch is dynamic
REWRITE = "write it again: python -m prunelab.pipeline.interop CHECKPOINT"


def refuse(path: str | Path, problem: str) -> ExportError:
    """``integrity.refuse``'s one line, with the remedy for these files: no stage writes them, the command does."""
    return ExportError(f"{path}: {problem}; {REWRITE}")


def _prepared(model: nn.Module) -> nn.Module:
    """A copy on the CPU in eval mode, masks still attached (torch.nn.utils.prune) folded in."""
    from prunelab.pruning.masks import make_permanent

    # a masked layer's ``weight`` is computed (weight_orig * weight_mask) and deepcopy refuses
    # non-leaf tensors: copy it detached; make_permanent recomputes it from the copied parts
    memo = {id(m.weight): m.weight.detach().clone() for m in model.modules() if hasattr(m, "weight_mask")}
    prepared = copy.deepcopy(model, memo).cpu().eval()
    make_permanent(prepared)
    return prepared


@torch.inference_mode()
def compare(
    model: nn.Module, predict: Callable[[torch.Tensor], torch.Tensor], input_shape: Sequence[int], name: str | Path
) -> float:
    """Max |logit difference| of ``predict`` against ``model`` on a probe batch; RuntimeError beyond tolerance.

    The tolerance is ``export_model``'s: 1e-4, relative to the largest logit where that exceeds 1.
    A difference beyond it is a bug, not the user's input: it keeps its traceback.
    """
    x = torch.rand(PROBE_BATCH, *input_shape, generator=torch.Generator().manual_seed(1))
    was_training = model.training
    model.eval()
    try:
        expected = model(x.to(next(model.parameters()).device)).float().cpu()
    finally:
        model.train(was_training)
    diff = float((predict(x).float().cpu() - expected).abs().max())
    if not diff <= CHECK_TOLERANCE * max(1.0, float(expected.abs().max())):
        raise RuntimeError(f"{name}: its outputs differ from the model's by up to {diff:.3g}")
    return diff


# -- ONNX -----------------------------------------------------------------------------------


def _to_onnx(model: nn.Module, shape: tuple[int, ...]) -> Any:
    """The model as an onnx.ModelProto, its batch dimension dynamic.

    torch.export's exporter (dynamo=True, onnxscript) first. Measured on 2 shared CPU cores,
    torch 2.14: the R1 MLP takes it 2.3 s in a fresh process (0.7 s warm), the TorchScript
    exporter 0.1 s (0.04 s warm); resnet101 about 6 s either way; both match the model to
    1e-7. The TorchScript exporter is deprecated since PyTorch 2.9 (it warns; it will go), and
    2 s is not slow for a one-off export: it is only the fallback where torch.export fails.
    """
    import io
    import warnings

    import onnx

    x = torch.rand(TRACE_BATCH, *shape, generator=torch.Generator().manual_seed(0))
    names: dict[str, Any] = {"input_names": [INPUT], "output_names": [OUTPUT], "verbose": False}
    try:
        batch = ({0: torch.export.Dim("batch")},)
        program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=batch, external_data=False, **names)
        return program.model_proto
    except Exception:  # torch.export's errors have no common base besides Exception
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # chosen knowingly, as the fallback
            batch = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}
            torch.onnx.export(model, (x,), buffer, dynamo=False, dynamic_axes=batch, **names)
        return onnx.load_from_string(buffer.getvalue())


def write_onnx(model: nn.Module, input_shape: Sequence[int], path: str | Path) -> Path:
    """Write ``model`` to ``path`` as one ONNX file, checked (onnx.checker, then ONNX Runtime against the model).

    ``model`` may be structurally smaller or masked (zeros in its weights, or masks still
    attached: a copy has them folded in; ``model`` itself is left as it is).
    """
    import onnx

    target, shape = Path(path), tuple(int(d) for d in input_shape)
    prepared = _prepared(model)
    size = sum(t.numel() * t.element_size() for t in (*prepared.parameters(), *prepared.buffers()))
    if size >= ONNX_LIMIT:
        raise PrunelabError(
            f"{target}: weights of {size / 2**30:.1f} GiB; allowed: under 2 GiB (one file, no external data)"
        )
    proto = _to_onnx(prepared, shape)
    with atomic.atomic_path(target) as tmp:  # renamed only once it checks and computes what the model does
        onnx.save_model(proto, tmp, save_as_external_data=False)
        onnx.checker.check_model(str(tmp), full_check=True)
        session = onnx_session(tmp)
        compare(prepared, lambda x: run_onnx(session, x), shape, target)
    return target


def onnx_session(path: str | Path) -> Any:
    """An onnxruntime.InferenceSession of the ONNX file at ``path``, on the CPU."""
    import onnxruntime as ort

    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path} is missing; {REWRITE}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its notes on unused initializers would clutter every run
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors (Fail, InvalidProtobuf, ...) derive from Exception only
        raise refuse(path, f"not an ONNX model ONNX Runtime can load ({atomic.reason(exc)})") from None


def run_onnx(session: Any, x: torch.Tensor) -> torch.Tensor:
    """The session's output for ``x`` (float32, as the exported graph takes it)."""
    feed = {session.get_inputs()[0].name: x.detach().cpu().float().numpy()}
    return torch.from_numpy(session.run(None, feed)[0])


# -- safetensors ----------------------------------------------------------------------------


def _digest(header: Mapping[str, Any], body: bytes | memoryview) -> str:
    """SHA-256 of the tensors' description (names, dtypes, shapes, offsets), the metadata but this, and the data."""
    described = {k: v for k, v in header.items() if k != "__metadata__"}
    metadata = {k: v for k, v in (header.get("__metadata__") or {}).items() if k != "sha256"}
    digest = hashlib.sha256(json.dumps([described, metadata], sort_keys=True, separators=(",", ":")).encode())
    digest.update(body)
    return digest.hexdigest()


def _split(path: Path, data: bytes) -> tuple[dict[str, Any], memoryview]:
    """(header, data section) of a safetensors file: 8 bytes of header length, JSON header, tensors."""
    if len(data) < 8:
        raise refuse(path, f"not a safetensors file ({len(data)} bytes)")
    (length,) = struct.unpack_from("<Q", data)
    if length > len(data) - 8:
        raise refuse(path, f"not a safetensors file, or truncated (header of {length} bytes, file of {len(data)})")
    try:
        header = json.loads(bytes(data[8 : 8 + length]).decode())
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise refuse(path, f"not a safetensors file (its header is not valid: {atomic.reason(exc)})") from None
    return header, memoryview(data)[8 + length :]


def write_safetensors(
    model: nn.Module,
    path: str | Path,
    *,
    model_cfg: Any,
    input_shape: Sequence[int],
    num_classes: int,
    masks: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights (dense, ``masks`` folded in), its masks and config to ``path`` as safetensors.

    ``model_cfg``: its ``config.ModelConfig``; ``masks``: 0/1 per layer name, as a checkpoint
    holds them (none for a structurally pruned model); ``meta``: JSON-able notes (the
    checkpoint's). The file loads with ``load_safetensors``, or any safetensors reader.
    """
    target, shape = Path(path), tuple(int(d) for d in input_shape)
    prepared = _prepared(model)
    masks = {name: m.detach().cpu().bool().contiguous() for name, m in masks.items()}
    layers = dict(prepared.named_modules())
    with torch.no_grad():
        for name, mask in masks.items():
            weight = getattr(layers.get(name), "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.shape != mask.shape:
                raise PrunelabError(f"{target}: mask {name!r} of shape {tuple(mask.shape)} fits no layer weight")
            weight.mul_(mask)  # the weights agree with the masks stored beside them
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in prepared.state_dict().items()}
    if clash := [k for k in tensors if k.startswith(MASK_PREFIX)]:
        raise PrunelabError(f"{target}: weight {clash[0]} is named like a mask ({MASK_PREFIX}...): cannot store both")
    tensors |= {MASK_PREFIX + name: mask for name, mask in masks.items()}
    metadata = {
        "format": "pt",  # the safetensors convention: the framework its tensors come from
        "prunelab_format": SAFETENSORS_FORMAT,
        "prunelab_version": str(SAFETENSORS_VERSION),
        "model_cfg": json.dumps(model_cfg.as_dict(), sort_keys=True),
        "input_shape": json.dumps(list(shape)),
        "num_classes": json.dumps(int(num_classes)),
        "meta": json.dumps(dict(meta or {}), sort_keys=True),
    }
    from safetensors.torch import save

    # the digest covers the header's tensor entries and the data: serialise once to learn them
    # (the data section does not depend on the metadata), then again with the digest in
    header, body = _split(target, save(tensors, metadata))
    data = save(tensors, {**metadata, "sha256": _digest(header, body)})
    with atomic.atomic_path(target) as tmp:  # renamed only once it loads back and computes what the model does
        tmp.write_bytes(data)
        loaded = load_safetensors(tmp)
        compare(prepared, loaded.model.eval(), shape, target)
    return target


def load_safetensors(path: str | Path) -> Checkpoint:
    """The model in a safetensors file ``write_safetensors`` wrote, rebuilt from its config, with its masks.

    A structurally pruned model is rebuilt as ``train.checkpoint.load`` rebuilds one: each
    layer whose stored weight has another shape than the config builds is rebuilt at that
    shape (``resize_to``), then every weight is loaded strictly. A missing, truncated,
    modified or foreign file is one ``ExportError`` naming it.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    from prunelab.config import ModelConfig
    from prunelab.models import MODELS
    from prunelab.train.checkpoint import resize_to

    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path} is missing; {REWRITE}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise refuse(path, f"unreadable ({atomic.reason(exc)})") from None
    header, body = _split(path, data)
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or metadata.get("prunelab_format") != SAFETENSORS_FORMAT:
        raise refuse(path, "a safetensors file without prunelab's metadata: its model cannot be rebuilt")
    if metadata.get("prunelab_version") != str(SAFETENSORS_VERSION):
        raise refuse(
            path,
            f"{SAFETENSORS_FORMAT} version {metadata.get('prunelab_version')!r}, "
            f"this prunelab reads version {SAFETENSORS_VERSION}",
        )
    if metadata.get("sha256") != _digest(header, body):
        raise refuse(path, "its SHA-256 does not match its contents: truncated or modified after it was written")
    try:
        tensors = load(data)
    except SafetensorError as exc:
        raise refuse(path, f"not a valid safetensors file ({atomic.reason(exc)})") from None
    stored = {k.removeprefix(MASK_PREFIX): v.float() for k, v in tensors.items() if k.startswith(MASK_PREFIX)}
    state = {k: v for k, v in tensors.items() if not k.startswith(MASK_PREFIX)}
    try:
        cfg = ModelConfig(**json.loads(metadata["model_cfg"]))
        shape = tuple(int(d) for d in json.loads(metadata["input_shape"]))
        classes = int(json.loads(metadata["num_classes"]))
        # every weight comes from the file: never download pretrained ones only to overwrite them
        model = MODELS.get(cfg.name)(dataclasses.replace(cfg, pretrained=False), shape, classes)
        resize_to(model, state, path)
        model.load_state_dict(state)
        for name, mask in stored.items():
            if model.get_submodule(name).weight.shape != mask.shape:
                raise ValueError(f"mask {name!r} of shape {tuple(mask.shape)} does not fit its layer")
        masks = {name: stored[name] for name, _ in model.named_modules() if name in stored}  # in layer order
        meta = dict(json.loads(metadata.get("meta", "{}")))
    except PrunelabError as exc:  # a config this prunelab refuses, a layer it cannot rebuild
        raise refuse(path, f"not a model this prunelab can build ({exc})") from None
    except (TypeError, ValueError, RuntimeError, AttributeError, KeyError) as exc:
        raise refuse(path, f"its contents do not fit a prunelab model ({atomic.reason(exc)})") from None
    return Checkpoint(model, cfg, shape, classes, masks, meta)
