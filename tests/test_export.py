"""Exports: the round trip for every method, the on-disk formats, integrity, and the kernel choice."""

import copy
import io
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from prunelab.config import ModelConfig, PruneConfig
from prunelab.errors import ConfigError, PrunelabError
from prunelab.export import SPARSE_WINS, WHOLE, ExportError, container, export_model, integrity, load_export, sparse
from prunelab.models import MODELS as MODEL_BUILDERS
from prunelab.pruning import METHODS, STRUCTURAL
from prunelab.pruning.masks import make_permanent
from prunelab.pruning.options import configure
from prunelab.train.evaluate import evaluate, scaled

MODELS = {
    "mlp": ModelConfig(name="mlp", hidden=(32, 16), bias=False),
    "mlp_bias": ModelConfig(name="mlp", hidden=(32, 16), bias=True),  # the sparse kernel's addmm path
    "cifar_cnn": ModelConfig(name="cifar_cnn", bias=True),
}


def configs() -> list[tuple[str, PruneConfig]]:
    """Every registered method (and its physical variant), on the first tiny model it applies to."""
    cases = [
        ("mlp_bias", configure(method="weight", sparsity=0.5)),
        ("cifar_cnn", configure(method="weight", sparsity=0.5)),
    ]  # conv weights stored sparse, run dense
    for method in METHODS.values():
        for physical in (False, True) if "physical" in method.option_keys() else (False,):
            cfg = configure(method=method.name, sparsity=0.5, physical=physical)
            cases.append(
                next((model, cfg) for model in ("mlp", "cifar_cnn") if method.why_not(_build(model), cfg) is None)
            )
    return cases


_CACHE: dict = {}


def _build(name: str) -> torch.nn.Module:
    """A fresh copy of the tiny model (4 classes, 1x8x8 inputs, random weights: seed 0)."""
    if name not in _CACHE:
        torch.manual_seed(0)
        _CACHE[name] = MODEL_BUILDERS.get(MODELS[name].name)(MODELS[name], (1, 8, 8), 4).eval()
    return copy.deepcopy(_CACHE[name])


def pruned(name: str, cfg: PruneConfig, shape=(1, 8, 8)) -> tuple[torch.nn.Module, bool]:
    model = _build(name)
    method = METHODS.get(cfg.method)
    method.prune(model, cfg, shape)
    make_permanent(model)
    return model.eval(), method.kind(cfg) == STRUCTURAL


@pytest.mark.parametrize(
    "model_name, cfg",
    configs(),
    ids=lambda v: v if isinstance(v, str) else f"{v.method}{'-physical' if v.as_dict().get('physical') else ''}",
)
def test_every_method_round_trips_with_the_same_predictions(model_name, cfg, tiny_data, tmp_path):
    model, structural = pruned(model_name, cfg)
    info = export_model(model, (1, 8, 8), tmp_path / "export", structural=structural, force="sparse")
    assert info.format == ("pt2" if structural else "sparse")
    assert info.path == tmp_path / f"export.{info.format}" and info.bytes == info.path.stat().st_size
    images = scaled(tiny_data.test.images)
    with torch.inference_mode():
        expected = model(images)
    reference = evaluate(model, tiny_data.test)
    for kernel in ("sparse", "dense", "rows"):  # each kernel of every layer, whichever a machine would pick
        module = load_export(info.path, force=kernel)
        with torch.inference_mode():
            got = module(images)
        assert float((got - expected).abs().max()) <= 1e-4, kernel
        assert evaluate(module, tiny_data.test)["accuracy"] == reference["accuracy"]
        if not structural:
            runs = {
                name: kernel if kernel in layer.available else "dense" for name, layer in module.sparse_layers.items()
            }
            assert module.sparse_layers and all(k == runs for k in module.kernels.values())


def test_a_mask_model_compresses_and_a_dense_one_is_a_pt2(tmp_path):
    dense = _build("mlp")
    assert export_model(dense, (1, 8, 8), tmp_path / "dense", structural=False, force="dense").format == "pt2"
    model, _ = pruned("mlp", configure(method="weight", sparsity=0.9))
    info = export_model(model, (1, 8, 8), tmp_path / "sparse", structural=False, force="dense")
    # fc2, 16 x 32 with 51 nonzeros: CSR 51 * (4 + 1) + 17 = 272 bytes, bitmask 64 + 51 * 4 = 268
    assert info.format == "sparse" and info.storage == {"fc1": "csr", "fc2": "bitmask", "fc3": "dense"}
    assert info.bytes < 0.5 * (tmp_path / "dense.pt2").stat().st_size


def test_the_sparse_file_holds_exactly_the_arrays_of_each_layers_storage(tmp_path):
    model, _ = pruned("mlp", configure(method="weight", sparsity=0.9))
    info = export_model(model, (1, 8, 8), tmp_path / "m", structural=False, force="dense")
    header, payload = integrity.unpack_container(info.path, info.path.read_bytes())
    head_len = int.from_bytes(info.path.read_bytes()[12:20], "little")
    assert info.bytes == 20 + head_len + len(payload) + 32
    fc1 = header["layers"]["fc1"]  # 32 x 64, round(0.9 * 2048) = 1843 zeros: 205 nonzeros
    assert fc1["nnz"] == 205 and fc1["storage"] == "csr"
    arrays = fc1["arrays"]
    assert arrays["values"]["bytes"] == 205 * 4
    assert arrays["col_indices"] == {**arrays["col_indices"], "dtype": "uint8", "bytes": 205}  # columns < 64
    assert arrays["crow_indices"] == {**arrays["crow_indices"], "dtype": "uint8", "bytes": 33}  # nnz < 256
    assert sum(a["bytes"] for a in arrays.values()) == container.storage_sizes((32, 64), 205, 4)["csr"]


def test_exports_are_byte_reproducible_and_a_stale_other_format_is_removed(tmp_path):
    model, _ = pruned("mlp", configure(method="weight", sparsity=0.9))
    first = export_model(model, (1, 8, 8), tmp_path / "m", structural=False, force="dense").path.read_bytes()
    assert export_model(model, (1, 8, 8), tmp_path / "m", structural=False, force="dense").path.read_bytes() == first
    export_model(model, (1, 8, 8), tmp_path / "m", structural=True, force="dense")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt2"]


# -- storage ---------------------------------------------------------------------------------


def test_storage_sizes_by_hand_and_the_smallest_is_chosen():
    # 10 x 300 float32: dense 12,000 bytes; bitmask 375 bytes + 4 per nonzero; CSR 4 per
    # nonzero + uint16 columns (< 300) + 11 row pointers (uint8 while nnz < 256, else uint16)
    assert container.storage_sizes((10, 300), 30, 4) == {"dense": 12000, "csr": 120 + 60 + 11, "bitmask": 375 + 120}
    assert container.storage_sizes((10, 300), 2000, 4) == {
        "dense": 12000,
        "csr": 8000 + 4000 + 22,
        "bitmask": 375 + 8000,
    }
    w = torch.randn(10, 300)
    for nnz, expected in ((30, "csr"), (2000, "bitmask"), (2950, "dense")):
        x = w.clone()
        x.view(-1)[nnz:] = 0
        assert container.choose_storage(x) == expected, nnz
    assert [container.index_dtype(v) for v in (255, 256, 65535, 65536, 2**32)] == [
        "uint8",
        "uint16",
        "uint16",
        "uint32",
        "int64",
    ]


@pytest.mark.parametrize("storage", ["csr", "bitmask"])
@pytest.mark.parametrize("shape", [(7, 13), (4, 3, 5, 5)])
def test_encode_decode_is_exact(storage, shape):
    w = torch.randn(shape)
    w[w.abs() < 0.8] = 0
    w.view(-1)[:3] = 0  # a first row partly empty, and a whole empty row below
    w[2] = 0
    arrays = container.encode(w, storage)
    assert torch.equal(container.decode(storage, arrays, shape, torch.float32), w)


def test_decode_refuses_arrays_that_do_not_describe_the_weight():
    arrays = container.encode(torch.eye(4), "csr")
    arrays["col_indices"] = arrays["col_indices"] + 4
    with pytest.raises(ValueError, match="inconsistent"):
        container.decode("csr", arrays, (4, 4), torch.float32)
    bits = container.encode(torch.eye(4), "bitmask")
    with pytest.raises(ValueError, match="disagree"):
        container.decode("bitmask", {**bits, "values": bits["values"][:3]}, (4, 4), torch.float32)


# -- integrity -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A weight-pruned tiny mlp exported in each format (written once; tests use copies)."""
    folder = tmp_path_factory.mktemp("exports")
    model, _ = pruned("mlp", configure(method="weight", sparsity=0.9))
    return {
        fmt: export_model(model, (1, 8, 8), folder / fmt, structural=fmt == "pt2", force="dense").path
        for fmt in ("sparse", "pt2")
    }


@pytest.fixture(params=["sparse", "pt2"])
def written(request, exports, tmp_path):
    path = tmp_path / exports[request.param].name
    path.write_bytes(exports[request.param].read_bytes())
    return path


def refused(path, match: str) -> str:
    with pytest.raises(ExportError, match=match) as info:
        load_export(path, force="dense")
    message = str(info.value)
    assert isinstance(info.value, PrunelabError) and "\n" not in message and str(path) in message
    return message


def test_a_truncated_export_is_refused_in_one_line_naming_it(written):
    data = written.read_bytes()
    for keep in (len(data) // 2, len(data) - 1, 10):
        written.write_bytes(data[:keep])
        refused(written, "truncated|SHA-256")


def test_a_modified_byte_anywhere_is_refused(written):
    data = bytearray(written.read_bytes())
    for at in (len(data) // 3, len(data) // 2, len(data) - 40):
        changed = bytearray(data)
        changed[at] ^= 0x01
        written.write_bytes(bytes(changed))
        refused(written, "SHA-256|CRC|unreadable|truncated|header|damaged|entries")


def test_every_single_byte_of_an_export_is_covered_by_its_check(written):
    # including the bytes zip readers skip: torch's local-header padding, the central
    # directory's attributes, the end record (a once-flaky case: only entries were digested)
    data = written.read_bytes()
    check = integrity.unpack_container if data.startswith(integrity.MAGIC) else integrity.read_pt2
    check(written, data)
    missed = []
    for at in range(len(data)):
        changed = bytearray(data)
        changed[at] ^= 0x01
        try:
            check(written, bytes(changed))
        except ExportError:
            continue
        missed.append(at)
    assert not missed, f"{len(missed)} of {len(data)} modified bytes went unnoticed, first at {missed[:5]}"


def rewrite_pt2(path, change) -> None:
    """Rewrite a sealed .pt2 with ``change(name, data) -> data`` applied to its entries (manifest kept)."""
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for info, data in entries:
            archive.writestr(info, data if info.filename.endswith(integrity.MANIFEST) else change(info.filename, data))
    integrity.end_with_digest(path)  # the file's digest redone, the entries' digests not


def reseal_pt2(path) -> None:
    """Drop the manifest and seal again: a crafted file whose digests are all correct."""
    with zipfile.ZipFile(path) as archive:
        entries = [
            (info, archive.read(info)) for info in archive.infolist() if not info.filename.endswith(integrity.MANIFEST)
        ]
        manifest = json.loads(archive.read(f"archive/{integrity.MANIFEST}"))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    integrity.seal_pt2(path, {k: v for k, v in manifest.items() if k != "entries"})


def weights_entry(name: str) -> bool:
    return name.endswith("weight_0")


def test_a_pt2_entry_changed_with_a_valid_crc_fails_its_digest(tmp_path):
    model, _ = pruned("mlp", configure(method="weight", sparsity=0.5))
    path = export_model(model, (1, 8, 8), tmp_path / "m", structural=True, force="dense").path
    rewrite_pt2(path, lambda name, data: (b"\x00" * 4 + data[4:]) if weights_entry(name) else data)
    refused(path, "weight_0 does not match its SHA-256")


def test_a_crafted_pt2_that_torch_would_unpickle_is_refused_before_any_unpickling(tmp_path, monkeypatch):
    model, _ = pruned("mlp", configure(method="weight", sparsity=0.5))
    path = export_model(model, (1, 8, 8), tmp_path / "m", structural=True, force="dense").path

    def unpickled(*args, **kwargs):
        raise AssertionError("something was unpickled")

    # sample inputs torch would read back with weights_only=False after weights_only=True fails
    payload = pickle.dumps(print)
    rewrite_pt2(path, lambda name, data: payload if "sample_inputs" in name else data)
    reseal_pt2(path)
    monkeypatch.setattr(torch, "load", unpickled)
    monkeypatch.setattr(pickle, "loads", unpickled)
    refused(path, "sample inputs")

    # a weight marked as pickled
    path = export_model(model, (1, 8, 8), tmp_path / "n", structural=True, force="dense").path

    def mark(name, data):
        if not name.endswith("model_weights_config.json"):
            return data
        config = json.loads(data)
        next(iter(config["config"].values()))["use_pickle"] = True
        return json.dumps(config).encode()

    rewrite_pt2(path, mark)
    reseal_pt2(path)
    refused(path, "pickled object")


def test_loading_unpickles_nothing(written, monkeypatch):
    def unpickled(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for target, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (torch._C, "_pickle_load_obj")):
        monkeypatch.setattr(target, name, unpickled)
    load_export(written, force="dense")


def test_missing_foreign_and_unsealed_files_are_refused(tmp_path):
    with pytest.raises(ExportError, match="missing"):
        load_export(tmp_path / "nothing.sparse")
    foreign = tmp_path / "foreign.pt2"
    foreign.write_bytes(b"not an export at all")
    refused(foreign, "neither a .pt2 archive nor")
    plain = tmp_path / "plain.pt2"
    program = torch.export.export(torch.nn.Linear(2, 2).eval(), (torch.rand(2, 2),))
    with open(plain, "wb") as fh:
        torch.export.save(program, fh)
    refused(plain, "without prunelab's manifest")


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(written, monkeypatch):
    before = written.read_bytes()
    model, _ = pruned("mlp", configure(method="weight", sparsity=0.9))
    from prunelab.export import pt2

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pt2, "save", fail)
    monkeypatch.setattr(pt2, "to_bytes", fail)
    with pytest.raises(OSError, match="disk full"):
        export_model(model, (1, 8, 8), written.with_suffix(""), structural=written.suffix == ".pt2")
    assert written.read_bytes() == before
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name]


def test_a_structural_pt2_loads_in_plain_torch_without_prunelab(tmp_path):
    model, structural = pruned("cifar_cnn", configure(method="filter", sparsity=0.5))
    assert structural
    path = export_model(model, (1, 8, 8), tmp_path / "filter", structural=True, force="dense").path
    x = torch.rand(3, 1, 8, 8)
    with torch.inference_mode():
        torch.save({"x": x, "y": model(x)}, tmp_path / "io.pt")
    code = (
        "import sys; sys.modules['prunelab'] = None\n"  # any import of prunelab fails
        "import torch\n"
        f"io = torch.load({str(tmp_path / 'io.pt')!r}, weights_only=True)\n"
        f"m = torch.export.load({str(path)!r}).module()\n"
        "assert (m(io['x']) - io['y']).abs().max() <= 1e-5\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_device_that_is_not_there_is_the_train_device_error(written):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=r"train\.device"):
        load_export(written, device="cuda")


def test_a_wrong_input_shape_is_named(written):
    with pytest.raises(ValueError, match=r"expects inputs of shape \(batch, 1, 8, 8\), got \(2, 1, 4, 4\)"):
        load_export(written, force="dense")(torch.rand(2, 1, 4, 4))


# -- the kernel choice -----------------------------------------------------------------------


def timer_from(table):
    """A timer that runs both kernels (they must agree) and reports ``table(layer, batch)``."""
    calls = []

    def timer(layer, batch, runs):
        outputs = {k: run() for k, run in runs.items()}
        other = "chosen" if layer == WHOLE else "sparse"  # the whole forward pass: chosen kernels against dense
        assert torch.allclose(outputs[other], outputs["dense"], atol=1e-5)
        calls.append((layer, batch))
        return table(layer, batch)

    timer.calls = calls
    return timer


@pytest.fixture(scope="module")
def weight_export(exports):
    model, _ = pruned("mlp", configure(method="weight", sparsity=0.9))
    return model, exports["sparse"]


def test_a_layer_falls_back_to_dense_where_sparse_is_slower(weight_export):
    _, path = weight_export
    slower = timer_from(lambda layer, batch: {"dense": 1.0, "sparse": 2.0})
    module = load_export(path, batch_sizes=(1, 64), timer=slower)
    assert module.kernels == {1: {"fc1": "dense", "fc2": "dense"}, 64: {"fc1": "dense", "fc2": "dense"}}
    assert sorted(slower.calls) == [("fc1", 1), ("fc1", 64), ("fc2", 1), ("fc2", 64)]
    assert all(layer.csr is None and layer.weight is not None for layer in module.sparse_layers.values())
    # dense everywhere: called as the plain aten.linear it was traced with, no SparseLinear in between
    assert not [node for node in module.program.graph.nodes if node.target is sparse.call]


def test_the_choice_is_per_layer_and_per_batch_size(weight_export):
    model, path = weight_export

    def table(layer, batch):
        sparse_wins = layer == "fc1" and batch >= 64
        return {"dense": 1.0, "sparse": 0.5 if sparse_wins else 1.5}

    module = load_export(path, batch_sizes=(1, 64), timer=timer_from(table))
    assert module.kernels == {1: {"fc1": "dense", "fc2": "dense"}, 64: {"fc1": "sparse", "fc2": "dense"}}
    assert module.kernels_at(32) == module.kernels[64] and module.kernels_at(2) == module.kernels[1]
    fc1 = module.sparse_layers["fc1"]
    assert fc1.csr is not None and fc1.weight is not None  # both kernels in use: both forms kept
    assert [n.args[0].target for n in module.program.graph.nodes if n.target is sparse.call] == ["sparse_fc1"]
    x = torch.rand(64, 1, 8, 8)
    with torch.inference_mode():
        assert float((module(x) - model(x)).abs().max()) <= 1e-5


def test_layers_that_win_alone_but_lose_together_fall_back_to_dense(weight_export):
    model, path = weight_export

    def table(layer, batch):
        if layer == WHOLE:  # the chain of sparse layers is slower than dense at batch 64, faster at 8
            return {"chosen": 2.0 if batch == 64 else 0.5, "dense": 1.0}
        return {"dense": 1.0, "sparse": 0.5}

    timer = timer_from(table)
    module = load_export(path, batch_sizes=(8, 64), timer=timer)
    assert module.kernels == {8: {"fc1": "sparse", "fc2": "sparse"}, 64: {"fc1": "dense", "fc2": "dense"}}
    assert [c for c in timer.calls if c[0] == WHOLE] == [(WHOLE, 8), (WHOLE, 64)]
    assert module.kernel_times[64][WHOLE] == {"chosen": 2.0, "dense": 1.0}
    x = torch.rand(64, 1, 8, 8)
    with torch.inference_mode():
        assert float((module(x) - model(x)).abs().max()) <= 1e-5
    # where every layer already chose dense, the whole pass is not timed again
    dense_timer = timer_from(lambda layer, batch: {"dense": 1.0, "sparse": 2.0})
    load_export(path, batch_sizes=(8,), timer=dense_timer)
    assert WHOLE not in [c[0] for c in dense_timer.calls]


def test_sparse_must_win_by_a_margin_and_force_overrides_timings(weight_export):
    _, path = weight_export
    close = timer_from(lambda layer, batch: {"dense": 1.0, "sparse": (SPARSE_WINS + 1) / 2})
    assert set(load_export(path, batch_sizes=(8,), timer=close).kernels[8].values()) == {"dense"}
    module = load_export(path, batch_sizes=(8,), force="sparse")
    assert set(module.kernels[8].values()) == {"sparse"}
    assert all(layer.weight is None for layer in module.sparse_layers.values())  # dense form dropped
    reused = load_export(path, batch_sizes=(8,), kernels={8: {"fc1": "sparse", "fc2": "dense"}})
    assert reused.kernels == {8: {"fc1": "sparse", "fc2": "dense"}}
    with pytest.raises(ValueError, match="force"):
        load_export(path, force="fast")


def test_export_model_reports_the_kernels_it_measured(tmp_path):
    model, _ = pruned("mlp", configure(method="weight", sparsity=0.9))
    faster = timer_from(lambda layer, batch: {"dense": 1.0, "sparse": 0.1})
    info = export_model(model, (1, 8, 8), tmp_path / "m", structural=False, batch_sizes=(1, 16), timer=faster)
    assert info.kernels == {1: {"fc1": "sparse", "fc2": "sparse"}, 16: {"fc1": "sparse", "fc2": "sparse"}}
    assert info.kernel_times[16]["fc1"] == {"dense": 1.0, "sparse": 0.1}
    measured = load_export(info.path, batch_sizes=(1,))  # the real timer: runs, and picks one of the two
    assert set(measured.kernels[1].values()) <= {"sparse", "dense"}
    assert all(t > 0 for times in measured.kernel_times[1].values() for t in times.values())


def test_unit_masks_get_the_rows_kernel_and_it_wins_where_measured_faster(tmp_path):
    model, _ = pruned("mlp", configure(method="unit", sparsity=0.5))
    path = export_model(model, (1, 8, 8), tmp_path / "unit", structural=False, force="dense").path
    module = load_export(path, force="dense")
    assert all(layer.available == ("dense", "sparse", "rows") for layer in module.sparse_layers.values())
    assert [layer.live.numel() for layer in module.sparse_layers.values()] == [16, 8]  # half the units of each
    fastest_rows = timer_from(lambda layer, batch: {"dense": 1.0, "sparse": 0.9, "rows": 0.5})
    module = load_export(path, batch_sizes=(4,), timer=fastest_rows)
    assert module.kernels == {4: {"fc1": "rows", "fc2": "rows"}}
    assert all(layer.weight is None and layer.csr is None for layer in module.sparse_layers.values())
    x = torch.rand(4, 1, 8, 8)
    with torch.inference_mode():
        assert float((module(x) - model(x)).abs().max()) <= 1e-5
    weight, _ = pruned("mlp", configure(method="weight", sparsity=0.5))  # no empty rows: no rows kernel
    path = export_model(weight, (1, 8, 8), tmp_path / "weight", structural=False, force="rows").path
    layers = load_export(path, force="dense").sparse_layers.values()
    assert all(layer.available == ("dense", "sparse") for layer in layers)


def test_an_export_does_not_depend_on_where_the_code_lives(tmp_path):
    import prunelab

    model, _ = pruned("mlp", configure(method="weight", sparsity=0.9))
    for structural in (True, False):
        path = export_model(model, (1, 8, 8), tmp_path / f"m{structural}", structural=structural, force="dense").path
        data = path.read_bytes()
        if data.startswith(integrity.MAGIC):  # the program inside a .sparse is deflated
            import zlib

            header, payload = integrity.unpack_container(path, data)
            data = zlib.decompress(bytes(payload[: header["program"]["bytes"]]))
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            text = b"".join(archive.read(name) for name in archive.namelist())
        source = str(Path(prunelab.__file__).resolve().parents[1]).encode()
        assert source not in text and b"stack_trace" not in text.replace(b'"stack_trace": null', b"")
