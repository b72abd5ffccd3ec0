"""Exports other tools load: ONNX run by ONNX Runtime, safetensors round trips, damaged files, the command."""

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from prunelab import cli
from prunelab.config import ModelConfig
from prunelab.errors import PrunelabError
from prunelab.export import ExportError, interop
from prunelab.models import MODELS
from prunelab.pipeline import interop as command
from prunelab.pruning import METHODS, configure
from prunelab.pruning.masks import make_permanent
from prunelab.train import checkpoint

CONFIGS = {
    "mlp": ModelConfig(name="mlp", hidden=(32, 16), bias=False),
    "cifar_cnn": ModelConfig(name="cifar_cnn", bias=True),
    "mnist_cnn": ModelConfig(name="mnist_cnn", bias=True),  # BatchNorm: resized with its conv
}
SHAPES = {"mlp": (1, 8, 8), "cifar_cnn": (3, 16, 16), "mnist_cnn": (1, 28, 28)}
PRUNINGS = {
    "weight": {"method": "weight", "sparsity": 0.9},
    "filter": {"method": "filter", "sparsity": 0.5},
    "unit-physical": {"method": "unit", "sparsity": 0.5, "physical": True},
}
CASES = [("mlp", "weight"), ("cifar_cnn", "filter"), ("mlp", "unit-physical")]
CLASSES = 4


def pruned(name: str, pruning: str, *, permanent: bool = True) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """A tiny model (random weights, seed 0) pruned by ``pruning``, and its masks (none when structures went)."""
    torch.manual_seed(0)
    model = MODELS.get(CONFIGS[name].name)(CONFIGS[name], SHAPES[name], CLASSES).eval()
    result = METHODS.get(PRUNINGS[pruning]["method"]).prune(model, configure(**PRUNINGS[pruning]), SHAPES[name])
    if permanent:
        make_permanent(model)
    return model, {k: v.clone() for k, v in result.masks.items()}


def probe(name: str, batch: int = 7) -> torch.Tensor:
    return torch.rand(batch, *SHAPES[name], generator=torch.Generator().manual_seed(3))


def write_st(model: torch.nn.Module, path: Path, name: str, masks: dict) -> Path:
    shape = SHAPES[name]
    return interop.write_safetensors(
        model, path, model_cfg=CONFIGS[name], input_shape=shape, num_classes=CLASSES, masks=masks
    )


# -- ONNX ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, pruning", CASES, ids=lambda v: v)
def test_onnx_runtime_predicts_what_the_model_does(name, pruning, tmp_path):
    model, _ = pruned(name, pruning)
    path = interop.write_onnx(model, SHAPES[name], tmp_path / "model.onnx")
    assert path == tmp_path / "model.onnx" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    proto = onnx.load(str(path))  # weights inside the one file, none beside it
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)
    session = interop.onnx_session(path)
    assert isinstance(session.get_inputs()[0].shape[0], str)  # the batch dimension is symbolic
    for batch in (1, 7):
        with torch.inference_mode():
            expected = model(probe(name, batch))
        got = interop.run_onnx(session, probe(name, batch))
        assert got.shape == expected.shape and float((got - expected).abs().max()) <= 1e-4
    weights = [onnx.numpy_helper.to_array(t) for t in proto.graph.initializer]
    if pruning == "weight":  # the zeros are in the graph's weights (dense), as many as in the model's
        zeros = sum(int((p == 0).sum()) for p in model.parameters())
        assert zeros > 0.8 * sum(p.numel() for n, p in model.named_parameters() if n != "fc3.weight")
        assert sum(int((w == 0).sum()) for w in weights) >= zeros
    else:  # structurally smaller: the graph holds the smaller layers
        layer = model.conv1 if name == "cifar_cnn" else model.fc1
        assert layer.weight.shape[0] < (64 if name == "cifar_cnn" else 32)
        assert any(w.shape == tuple(layer.weight.shape) for w in weights)


def test_onnx_of_a_model_with_masks_still_attached_leaves_the_model_as_it_is(tmp_path):
    model, _ = pruned("mlp", "weight", permanent=False)
    path = interop.write_onnx(model, SHAPES["mlp"], tmp_path / "model.onnx")
    assert hasattr(model.fc1, "weight_mask")  # a copy had them folded in
    with torch.inference_mode():
        expected = model(probe("mlp"))
    got = interop.run_onnx(interop.onnx_session(path), probe("mlp"))
    assert float((got - expected).abs().max()) <= 1e-4


def test_onnx_file_runs_in_onnx_runtime_without_prunelab_or_torch(tmp_path):
    model, _ = pruned("cifar_cnn", "filter")
    path = interop.write_onnx(model, SHAPES["cifar_cnn"], tmp_path / "model.onnx")
    np.save(tmp_path / "x.npy", probe("cifar_cnn").numpy())
    code = (
        "import sys\n"
        "sys.modules['prunelab'] = sys.modules['torch'] = None  # neither may be imported\n"
        "import numpy as np, onnxruntime as ort\n"
        "s = ort.InferenceSession('model.onnx', providers=['CPUExecutionProvider'])\n"
        "np.save('y.npy', s.run(None, {s.get_inputs()[0].name: np.load('x.npy')})[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    with torch.inference_mode():
        expected = model(probe("cifar_cnn"))
    assert float((torch.from_numpy(np.load(tmp_path / "y.npy")) - expected).abs().max()) <= 1e-4
    assert path.exists()


def test_a_model_torch_export_cannot_trace_falls_back_to_the_torchscript_exporter(tmp_path, monkeypatch):
    real, used = torch.onnx.export, []

    def export(*args, **kwargs):
        used.append(kwargs["dynamo"])
        if kwargs["dynamo"]:
            raise RuntimeError("torch.export cannot trace this model")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export)
    model, _ = pruned("mlp", "unit-physical")
    path = interop.write_onnx(model, SHAPES["mlp"], tmp_path / "model.onnx")
    assert used == [True, False]
    session = interop.onnx_session(path)
    for batch in (1, 7):  # the batch dimension is dynamic with this exporter too
        with torch.inference_mode():
            expected = model(probe("mlp", batch))
        assert float((interop.run_onnx(session, probe("mlp", batch)) - expected).abs().max()) <= 1e-4


def test_weights_too_large_for_one_onnx_file_are_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(interop, "ONNX_LIMIT", 1000)  # the tiny MLP's weights take 10 KB
    model, _ = pruned("mlp", "weight")
    with pytest.raises(PrunelabError, match=re.escape(str(tmp_path / "model.onnx")) + ".*under 2 GiB") as caught:
        interop.write_onnx(model, SHAPES["mlp"], tmp_path / "model.onnx")
    assert "\n" not in str(caught.value) and not (tmp_path / "model.onnx").exists()


def test_a_file_onnx_runtime_cannot_load_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a protobuf at all" * 10)
    for path in (bad, tmp_path / "missing.onnx"):
        with pytest.raises(ExportError, match=re.escape(str(path))) as caught:
            interop.onnx_session(path)
        assert "\n" not in str(caught.value)


# -- safetensors ----------------------------------------------------------------------------


def test_safetensors_round_trip_gives_the_same_model_masks_and_logits(tmp_path):
    model, masks = pruned("mlp", "weight", permanent=False)  # masks attached: folded in by the writer
    meta = {"method": "weight", "sparsity": 0.9}
    path = interop.write_safetensors(
        model,
        tmp_path / "model.safetensors",
        model_cfg=CONFIGS["mlp"],
        input_shape=(1, 8, 8),
        num_classes=4,
        masks=masks,
        meta=meta,
    )
    loaded = interop.load_safetensors(path)
    assert str(loaded.model) == str(model)
    assert [type(m) for m in loaded.model.modules()] == [type(m) for m in model.modules()]
    assert loaded.model_cfg == CONFIGS["mlp"] and loaded.input_shape == (1, 8, 8) and loaded.num_classes == 4
    assert loaded.meta == meta
    assert list(loaded.masks) == list(masks) and all(torch.equal(loaded.masks[k], masks[k]) for k in masks)
    with torch.inference_mode():
        assert torch.equal(loaded.model.eval()(probe("mlp")), model(probe("mlp")))
    assert torch.equal(loaded.model.fc1.weight, model.fc1.weight_orig * model.fc1.weight_mask)
    with safe_open(path, framework="pt") as f:  # any safetensors reader: masks as bool tensors, config as JSON
        assert f.get_tensor("mask.fc1").dtype == torch.bool and "fc1.weight" in f.keys()
        assert json.loads(f.metadata()["model_cfg"]) == CONFIGS["mlp"].as_dict()


@pytest.mark.parametrize("name, pruning", [("mnist_cnn", "filter"), ("mlp", "unit-physical")], ids=lambda v: v)
def test_safetensors_of_a_structurally_smaller_model_rebuilds_its_smaller_layers(name, pruning, tmp_path):
    model, masks = pruned(name, pruning)
    assert masks == {}
    path = write_st(model, tmp_path / "m.safetensors", name, {})
    loaded = interop.load_safetensors(path)
    assert loaded.masks == {} and str(loaded.model) == str(model)  # every layer at its pruned size
    assert loaded.model.fc1.weight.shape != MODELS.get(name)(CONFIGS[name], SHAPES[name], 4).fc1.weight.shape
    with torch.inference_mode():
        assert torch.equal(loaded.model.eval()(probe(name)), model(probe(name)))


DAMAGE = {
    "truncated": lambda data: data[:-100],
    "truncated to nothing": lambda data: data[:5],
    "one byte flipped": lambda data: data[:-50] + bytes([data[-50] ^ 1]) + data[-49:],  # in the tensors' data
    "config edited": lambda data: data.replace(b"[32, 16]", b"[32, 17]", 1),  # the header still parses
    "not safetensors": lambda data: b"just some text, not a model\n" * 8,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_safetensors_file_is_one_export_error_naming_it(damage, tmp_path):
    model, masks = pruned("mlp", "weight")
    path = write_st(model, tmp_path / "model.safetensors", "mlp", masks)
    data = path.read_bytes()
    assert DAMAGE[damage](data) != data
    path.write_bytes(DAMAGE[damage](data))
    with pytest.raises(ExportError, match=re.escape(str(path))) as caught:
        interop.load_safetensors(path)
    assert "\n" not in str(caught.value)


def test_a_foreign_or_missing_safetensors_file_is_one_export_error_naming_it(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, foreign)
    for path, says in ((foreign, "without prunelab's metadata"), (tmp_path / "missing.safetensors", "missing")):
        with pytest.raises(ExportError, match=re.escape(str(path))) as caught:
            interop.load_safetensors(path)
        assert says in str(caught.value) and "\n" not in str(caught.value)


# -- the command ------------------------------------------------------------------------------


@pytest.fixture
def cli_run():
    """``cli.run``, as the command's ``__main__`` calls it; the SIGTERM handler it installs is put back after."""
    handler = signal.getsignal(signal.SIGTERM)
    yield cli.run
    signal.signal(signal.SIGTERM, handler)


def _save(path: Path) -> Path:
    model, masks = pruned("mlp", "weight")
    ckpt = checkpoint.Checkpoint(model, CONFIGS["mlp"], (1, 8, 8), 4, masks, {"method": "weight"})
    return checkpoint.save(path, ckpt)


def test_the_command_writes_both_files_checked(tmp_path, capsys, cli_run):
    ckpt = _save(tmp_path / "ckpt.pt")
    out = tmp_path / "out"
    cli_run(lambda: command.main([str(ckpt), "--out", str(out)]))  # returns: exit code 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.safetensors"]
    assert [line.split(": ")[0] for line in lines] == [str(out / "model.onnx"), str(out / "model.safetensors")]
    for line, file in zip(lines, ("model.onnx", "model.safetensors")):
        assert f"{(out / file).stat().st_size:,} bytes" in line
        assert float(line.rsplit("max |Δlogit| ", 1)[1]) <= 1e-4
    expected = checkpoint.load(ckpt).model.eval()
    with torch.inference_mode():
        assert torch.equal(
            interop.load_safetensors(out / "model.safetensors").model.eval()(probe("mlp")), expected(probe("mlp"))
        )


def test_the_command_writes_to_the_export_folder_or_beside_the_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the stages' paths are relative to the repository root
    _save(Path("models/finetuned.pt"))
    _save(Path("models/baseline/seed-3.pt"))
    command.main(["models/finetuned.pt", "--to", "safetensors"])
    command.main(["models/baseline/seed-3.pt", "--to", "safetensors", "safetensors"])
    assert Path("models/export/finetuned/model.safetensors").exists()
    assert (
        Path("models/baseline/seed-3.safetensors").exists() and not Path("models/baseline/model.safetensors").exists()
    )
    assert len(capsys.readouterr().out.splitlines()) == 2  # a format asked twice is written once


def test_an_unknown_format_is_one_line_listing_the_allowed_and_exit_2(tmp_path):
    ckpt = _save(tmp_path / "ckpt.pt")
    args = [sys.executable, "-m", "prunelab.pipeline.interop", str(ckpt), "--to", "onnx", "tflite"]
    out = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == cli.EXIT_BAD_INPUT
    assert out.stderr.strip().count("\n") == 0 and "'tflite'" in out.stderr and "onnx, safetensors" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # nothing written


@pytest.mark.parametrize("argv", [["missing.pt"], [], ["ckpt.pt", "--out", "ckpt.pt"]], ids=["missing", "none", "file"])
def test_bad_input_to_the_command_is_one_line_and_exit_2(argv, tmp_path, monkeypatch, capsys, cli_run):
    monkeypatch.chdir(tmp_path)
    _save(Path("ckpt.pt"))
    with pytest.raises(SystemExit) as exited:
        cli_run(lambda: command.main(argv))
    assert exited.value.code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_a_mask_that_fits_no_layer_is_refused(tmp_path):
    model, masks = pruned("mlp", "weight")
    with pytest.raises(PrunelabError, match="mask 'fc1'"):
        write_st(model, tmp_path / "m.safetensors", "mlp", {"fc1": masks["fc1"][:, :3]})
    assert not (tmp_path / "m.safetensors").exists()
