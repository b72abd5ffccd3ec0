"""bench/efficiency.py's ONNX Runtime and int8 sides: each runs the model it stands for (no timing here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))  # the bench imports machine_load from its own folder
import efficiency  # noqa: E402

SHAPE = (1, 8, 8)


def test_ort_runs_the_dense_model_at_any_batch(tiny_model, tmp_path):
    path = efficiency.write_onnx(tiny_model.eval(), SHAPE, tmp_path / "m.onnx")
    ort = efficiency.OrtModule(path, spin=False)
    assert ort.threads == torch.get_num_threads()
    with torch.inference_mode():
        for batch in (1, 5):  # the batch dimension is dynamic
            x = torch.rand(batch, *SHAPE)
            torch.testing.assert_close(ort(x), tiny_model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("engine", [e for e in efficiency.ENGINES if e in torch.backends.quantized.supported_engines])
def test_torch_int8_stays_close_to_fp32(tiny_model, engine):
    model, x, before = tiny_model.eval(), torch.rand(16, *SHAPE), torch.backends.quantized.engine
    quantized = efficiency.torch_int8(model, engine)
    assert torch.backends.quantized.engine == before  # the global engine is put back
    with torch.inference_mode():
        err = efficiency.logit_error(quantized(x), model(x))
    assert 0 < err["max_abs_logit_diff"] and err["rel_logit_diff"] < 0.2


def test_ort_int8_stays_close_to_fp32(tiny_model, tmp_path):
    model, x = tiny_model.eval(), torch.rand(16, *SHAPE)
    path = efficiency.ort_int8(efficiency.write_onnx(model, SHAPE, tmp_path / "m.onnx"))
    with torch.inference_mode():
        err = efficiency.logit_error(efficiency.OrtModule(path, spin=False)(x), model(x))
    assert 0 < err["max_abs_logit_diff"] and err["rel_logit_diff"] < 0.2
