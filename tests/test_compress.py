"""Deep Compression: quantization (k-means, linear), the compact encoding, the version-2 file, and its checks."""

import bz2
import copy
import json
import lzma
import struct
import zlib

import pytest
import torch

from prunelab.compress import apply, finetune_centroids, kmeans, linear, quantize
from prunelab.config import CompressConfig, ConfigError, FinetuneConfig, ModelConfig, PruneConfig
from prunelab.export import ExportError, codec, export_model, integrity, load_export
from prunelab.export.codec import Shared
from prunelab.models import MODELS
from prunelab.pipeline.compress import compress_model
from prunelab.pruning import METHODS
from prunelab.pruning.masks import make_permanent
from prunelab.pruning.options import configure
from prunelab.train.evaluate import evaluate


def sparse_weight(shape, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g)
    return w * (torch.rand(shape, generator=g) < density)


# -- quantization --------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 5, 8])
def test_kmeans_shares_each_kept_weight_with_its_nearest_centroid_and_keeps_zeros(bits):
    w = sparse_weight((64, 48), 0.3)
    s = kmeans(w, bits)
    assert s.table.numel() == 2**bits and s.codes.numel() == int((w != 0).sum())
    assert torch.equal(s.mask, w != 0)
    dense = s.dense()
    assert torch.equal(dense == 0, w == 0) or bool((dense[w == 0] == 0).all())  # zeros stay zeros
    kept = w[w != 0]
    nearest = (kept[:, None] - s.table[None, :]).abs().min(dim=1).values
    assert torch.allclose((kept - s.values()).abs(), nearest, atol=1e-6)  # Lloyd's fixed point: the nearest one
    # Lloyd's iterations only improve on the linear initialisation they start from
    start = torch.linspace(float(kept.min()), float(kept.max()), 2**bits)
    start_error = (kept[:, None] - start[None, :]).abs().min(dim=1).values.pow(2).mean()
    assert float((kept - s.values()).pow(2).mean()) <= float(start_error) + 1e-9


def test_more_bits_quantize_more_finely():
    w = sparse_weight((128, 64), 0.5)
    errors = [float((kmeans(w, b).dense() - w).pow(2).mean()) for b in (2, 4, 6, 8)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0] / 50


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_linear_per_channel_integers_are_within_half_a_step(bits):
    w = sparse_weight((16, 3, 3, 3), 0.6)
    s = linear(w, bits)
    qmax = 2 ** (bits - 1) - 1
    assert s.table.shape == (16,) and int(s.codes.max()) <= 2 * qmax
    steps = s.table[:, None, None, None].expand_as(w)
    error = (s.dense() - w).abs()
    assert bool((error <= steps / 2 + 1e-6).all())
    assert bool((s.dense()[w == 0] == 0).all())
    # each channel's largest weight is exact: it sets the scale
    rows = w.reshape(16, -1)
    top = rows.abs().argmax(dim=1)
    assert torch.allclose(s.dense().reshape(16, -1).gather(1, top[:, None]), rows.gather(1, top[:, None]), atol=1e-6)


def test_quantize_covers_every_layer_and_leaves_the_model_alone(tiny_model):
    before = copy.deepcopy(tiny_model.state_dict())
    shared = quantize(tiny_model, "kmeans", 4)
    assert set(shared) == {n for n, m in tiny_model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    with pytest.raises(ValueError, match="bits 9"):
        quantize(tiny_model, "kmeans", 9)
    with pytest.raises(ValueError, match="no Linear or Conv"):
        quantize(torch.nn.Sequential(torch.nn.ReLU()), "kmeans", 5)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("bits", 1, "from 2 to 8"),
        ("bits", 9, "from 2 to 8"),
        ("bits", "5", "from 2 to 8"),
        ("bits", True, "from 2 to 8"),
        ("scheme", "huffman", "kmeans"),
        ("finetune_epochs", -1, "integer"),
        ("lr", 0, "number"),
    ],
)
def test_bad_compress_params_name_the_key_and_what_is_allowed(key, value, allowed):
    with pytest.raises(ConfigError) as err:
        CompressConfig(**{key: value})
    assert f"compress.{key}" in str(err.value) and allowed in str(err.value) and "\n" not in str(err.value)


def test_trained_quantization_refuses_the_linear_scheme():
    with pytest.raises(ConfigError, match=r"compress\.finetune_epochs.*trained quantization fine-tunes k-means"):
        CompressConfig(scheme="linear", finetune_epochs=2)


# -- the encoding --------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 3, 5, 8])
def test_bits_pack_and_unpack(bits):
    symbols = torch.randint(0, 2**bits, (1001,), generator=torch.Generator().manual_seed(bits))
    packed = codec.pack_bits(symbols, bits)
    assert len(packed) == -(-1001 * bits // 8)
    assert torch.equal(codec.unpack_bits(packed, bits, 1001), symbols)


def test_relative_indices_insert_fillers_for_long_gaps():
    positions = torch.tensor([0, 3, 40, 41, 1000])
    for index_bits in (1, 2, 4, 8):
        entries = codec.relative_entries(positions, index_bits)
        assert int(entries.max()) < 2**index_bits
        assert torch.equal(codec.relative_positions(entries, index_bits, 1001), positions)
    assert int((codec.relative_entries(positions, 4) == 0).sum()) == (40 - 4) // 15 + (959 - 1) // 15


@pytest.mark.parametrize(
    ("density", "way"), [(1.0, "all"), (0.5, "bitmask"), (0.03, "relative"), (0.0005, "relative"), (0.0, "relative")]
)
@pytest.mark.parametrize("scheme", ["kmeans", "linear"])
def test_a_layer_decodes_to_exactly_its_shared_weights(density, way, scheme):
    w = sparse_weight((200, 150), density) if density < 1 else torch.randn(200, 150)
    shared = quantize(torch.nn.Sequential(_linear(w)), scheme, 5)["0"]
    meta, streams = codec.encode(shared)
    assert meta["positions"] == way
    assert torch.equal(codec.decode(meta, streams, (200, 150)), shared.dense())


def test_entropy_coding_beats_packing_on_skewed_symbols_and_never_loses():
    g = torch.Generator().manual_seed(0)
    skewed = torch.where(torch.rand(20000, generator=g) < 0.9, 3, torch.randint(0, 32, (20000,), generator=g))
    coding, data = codec.entropy_code(skewed, 5)
    assert coding in ("lzma", "bz2", "zlib") and len(data) < len(codec.pack_bits(skewed, 5)) / 2
    uniform = torch.randint(0, 32, (20000,), generator=g)
    assert len(codec.entropy_code(uniform, 5)[1]) <= len(codec.pack_bits(uniform, 5))
    assert torch.equal(codec.entropy_decode(coding, data, 5, 20000), skewed)


@pytest.mark.parametrize("coding", ["zlib", "bz2", "lzma", "packed"])
def test_a_stream_that_is_short_long_or_cut_is_refused(coding):
    symbols = torch.arange(300) % 7
    data = {
        "zlib": zlib.compress(bytes(symbols.tolist())),
        "bz2": bz2.compress(bytes(symbols.tolist())),
        "lzma": lzma.compress(bytes(symbols.tolist()), format=lzma.FORMAT_RAW, filters=codec._LZMA),
        "packed": codec.pack_bits(symbols, 3),
    }[coding]
    assert torch.equal(codec.entropy_decode(coding, data, 3, 300), symbols)
    # a packed stream one symbol too long can fit in its last byte's padding: there, the positions'
    # count (checked against the codes' in decode) is what catches it
    wrong = [(299, data), (300, data[: len(data) // 2])] + ([(301, data)] if coding != "packed" else [])
    for count, cut in wrong:
        with pytest.raises(ValueError):
            codec.entropy_decode(coding, cut, 3, count)
    if coding != "packed":  # packed symbols cannot exceed their width
        with pytest.raises(ValueError, match="more than 2 bits"):
            codec.entropy_decode(coding, data, 2, 300)


def _linear(weight):
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


# -- the file ------------------------------------------------------------------------------

SHAPE = (1, 28, 28)


def mlp(sparsity=0.95, hidden=(300, 100)):
    torch.manual_seed(0)
    model = MODELS.get("mlp")(ModelConfig(name="mlp", hidden=hidden, bias=True), SHAPE, 10).eval()
    if sparsity:
        METHODS.get("weight").prune(model, PruneConfig(method="weight", sparsity=sparsity), SHAPE)
        make_permanent(model)
    return model


def _header(path):
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[12:20])
    return json.loads(data[20 : 20 + length]), data


def test_the_compressed_file_loads_back_as_the_quantized_model_and_is_version_2(tmp_path):
    model = mlp()
    shared = quantize(model, "kmeans", 5)
    info = export_model(model, SHAPE, tmp_path / "c", structural=False, shared=shared, force="dense")
    header, _ = _header(info.path)
    assert info.format == "sparse" and header["version"] == 2
    assert {layer["storage"] for layer in header["layers"].values()} == {"shared"}
    loaded = load_export(info.path, force="dense")
    expected = apply(copy.deepcopy(model), shared)
    x = torch.rand(16, *SHAPE)
    assert torch.allclose(loaded(x), expected(x), atol=1e-5)
    # every layer's weights come back exactly as shared (zeros where they were)
    for name, layer in loaded.sparse_layers.items():
        assert torch.equal(layer.dense_weight().cpu(), shared[name].dense())
    # the same model without quantization is written as version 1, which this prunelab still reads
    plain = export_model(model, SHAPE, tmp_path / "p", structural=False, force="dense")
    assert _header(plain.path)[0]["version"] == 1 and load_export(plain.path, force="dense") is not None
    assert info.bytes < plain.bytes / 4


def test_a_structurally_smaller_model_compresses_too(tmp_path):
    torch.manual_seed(0)
    cfg = PruneConfig(method="unit", sparsity=0.5, options=METHODS.get("unit").options(physical=True))
    model = MODELS.get("mlp")(ModelConfig(name="mlp", hidden=(64, 32), bias=False), SHAPE, 10).eval()
    METHODS.get("unit").prune(model, cfg, SHAPE)
    make_permanent(model)
    shared = quantize(model, "linear", 8)
    info = export_model(model, SHAPE, tmp_path / "u", structural=True, shared=shared, force="dense")
    x = torch.rand(4, *SHAPE)
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(load_export(info.path, force="dense")(x), expected, atol=0.05 * float(expected.abs().max()))


def _reseal(path, header, data):
    """The file with ``header`` in place of its own and a digest that matches: a crafted file."""
    (length,) = struct.unpack("<Q", data[12:20])
    payload = data[20 + length : -32]
    path.write_bytes(integrity.pack_container(header, payload))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h: h["shared"]["counts"].__setitem__("codes", 5),
        lambda h: h["shared"].__setitem__("bits", 9),
        lambda h: h["shared"].__setitem__("scheme", "huffman"),
        lambda h: h["streams"]["codes"].__setitem__("bytes", 10**9),
        lambda h: h["shared"]["coding"].__setitem__("codes", "brotli"),
        lambda h: h.pop("streams"),
    ],
)
def test_a_crafted_header_is_one_line_naming_the_file(tmp_path, tamper):
    model = mlp()
    info = export_model(
        model, SHAPE, tmp_path / "c", structural=False, shared=quantize(model, "kmeans", 5), force="dense"
    )
    header, data = _header(info.path)
    tamper(header["layers"][next(iter(header["layers"]))])
    _reseal(info.path, header, data)
    with pytest.raises(ExportError) as err:
        load_export(info.path, force="dense")
    assert str(info.path) in str(err.value) and "\n" not in str(err.value)


def test_truncated_flipped_and_future_files_are_refused(tmp_path):
    model = mlp()
    info = export_model(
        model, SHAPE, tmp_path / "c", structural=False, shared=quantize(model, "kmeans", 5), force="dense"
    )
    good = info.path.read_bytes()
    for bad in (good[: len(good) // 2], good[:-1], good[:300] + bytes([good[300] ^ 1]) + good[301:]):
        info.path.write_bytes(bad)
        with pytest.raises(ExportError, match=str(info.path)):
            load_export(info.path)
    info.path.write_bytes(good)
    header, data = _header(info.path)
    # versions 1 and 2 load (test_the_compressed_file_loads_back_as_the_quantized_model_and_is_version_2);
    # one on either side of them, or a version that is not a number, is refused before anything is read
    for version in (3, 0, "2", None):
        header["version"] = version
        _reseal(info.path, header, data)
        with pytest.raises(
            ExportError, match=rf"version {version!r}, this prunelab reads 'prunelab-sparse' version 1 or 2"
        ):
            load_export(info.path)


# -- the pipeline's step -------------------------------------------------------------------


def test_compress_model_measures_the_file_as_loaded_back(tmp_path, tiny_data):
    torch.manual_seed(0)
    model = MODELS.get("mlp")(ModelConfig(name="mlp", hidden=(32, 16), bias=False), (1, 8, 8), 4).eval()
    METHODS.get("weight").prune(model, PruneConfig(method="weight", sparsity=0.8), (1, 8, 8))
    make_permanent(model)
    before = copy.deepcopy(model.state_dict())
    info, values = compress_model(
        model,
        CompressConfig(scheme="kmeans", bits=3),
        (1, 8, 8),
        tmp_path / "m",
        dense_bytes=10**6,
        test=tiny_data.test,
    )
    loaded = load_export(info.path, force="dense")
    scores = evaluate(loaded, tiny_data.test, torch.device("cpu"))
    assert values["compressed_test_accuracy"] == scores["accuracy"]
    assert values["compressed_bytes"] == info.path.stat().st_size == info.bytes
    assert values["compression_factor"] == pytest.approx(10**6 / info.bytes)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model: untouched


def test_trained_quantization_moves_only_the_shared_values(tiny_data):
    torch.manual_seed(0)
    model = MODELS.get("mlp")(ModelConfig(name="mlp", hidden=(32, 16), bias=False), (1, 8, 8), 4).eval()
    METHODS.get("weight").prune(model, PruneConfig(method="weight", sparsity=0.7), (1, 8, 8))
    make_permanent(model)
    shared = quantize(model, "kmeans", 2)  # coarse: room to improve
    before = evaluate(apply(copy.deepcopy(model), shared), tiny_data.val, torch.device("cpu"))["loss"]
    tuned = finetune_centroids(
        model, shared, tiny_data, FinetuneConfig(), epochs=3, lr=1e-2, seed=0, device=torch.device("cpu")
    )
    after = evaluate(model, tiny_data.val, torch.device("cpu"))["loss"]
    assert after <= before
    for name, s in tuned.items():
        assert torch.equal(s.codes, shared[name].codes) and torch.equal(s.mask, shared[name].mask)
        assert torch.equal(model.get_submodule(name).weight.detach(), s.dense())  # the model holds them
    assert any(not torch.equal(s.table, shared[n].table) for n, s in tuned.items())
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again
    assert isinstance(next(iter(tuned.values())), Shared)


def test_int8_files_may_run_pytorchs_int8_kernel_when_asked_and_only_then(tmp_path):
    model = mlp(sparsity=0.5)

    def write(name, shared):
        return export_model(model, SHAPE, tmp_path / name, structural=False, shared=shared, force="dense")

    linear8, kmeans5 = write("l8", quantize(model, "linear", 8)), write("k5", quantize(model, "kmeans", 5))
    plain = load_export(linear8.path, force="dense")
    assert all("int8" not in layer.available for layer in plain.sparse_layers.values())  # not unless asked
    fast = load_export(linear8.path, force="int8", int8=True)
    assert {k for layer in fast.sparse_layers.values() for k in layer.kernels.values()} == {"int8"}
    x = torch.rand(32, *SHAPE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        exact, rounded = plain(x), fast(x)
    # the weights are the stored int8 exactly: only the activations' 8-bit rounding differs
    assert 0 < float((exact - rounded).abs().max()) < 0.05 * float(exact.abs().max())
    assert float((exact.argmax(1) == rounded.argmax(1)).float().mean()) >= 0.9
    # a k-means file is not int8: the kernel is not offered, forcing it runs dense
    shared = load_export(kmeans5.path, force="int8", int8=True)
    assert {k for layer in shared.sparse_layers.values() for k in layer.kernels.values()} == {"dense"}


def test_a_filter_pruned_cnn_compresses_its_convolutions_too(tmp_path):
    torch.manual_seed(0)
    shape = (3, 32, 32)
    model = MODELS.get("cifar_cnn")(ModelConfig(name="cifar_cnn", bias=True), shape, 10).eval()
    METHODS.get("filter").prune(model, configure(method="filter", sparsity=0.5), shape)
    make_permanent(model)
    shared = quantize(model, "kmeans", 6)
    assert any(s.mask.dim() == 4 for s in shared.values())  # conv weights are quantized as well
    info = export_model(model, shape, tmp_path / "cnn", structural=True, shared=shared, force="dense")
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(load_export(info.path, force="dense")(x), apply(model, shared)(x), atol=1e-4)
