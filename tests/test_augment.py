"""Batch augmentation: every output is a shifted (zero-filled) and possibly mirrored copy of its input."""

import torch
import torch.nn.functional as F

from prunelab.config import TrainConfig
from prunelab.models import build_for
from prunelab.train.augment import crop_and_flip, padding_for
from prunelab.train.fit import fit


def candidates(image: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """Every crop window of the zero-padded image, plain and mirrored."""
    _, h, w = image.shape
    padded = F.pad(image, (pad, pad, pad, pad))
    crops = [padded[:, dy : dy + h, dx : dx + w] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
    return crops + [c.flip(2) for c in crops]


def test_each_sample_is_one_crop_window_possibly_mirrored():
    x = torch.rand(64, 3, 6, 5)
    out = crop_and_flip(x, torch.Generator().manual_seed(0), pad=1)
    assert out.shape == x.shape and out.dtype == x.dtype
    flipped = 0
    for src, got in zip(x, out):
        options = candidates(src, 1)
        matches = [i for i, c in enumerate(options) if torch.equal(c, got)]
        assert matches, "output is not a crop window of its own input"
        flipped += min(matches) >= len(options) // 2
    assert 16 < flipped < 48  # p = 0.5 over 64 samples


def test_same_generator_seed_same_batch_and_uint8_works():
    x = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8)
    a = crop_and_flip(x, torch.Generator().manual_seed(3))
    b = crop_and_flip(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.uint8
    assert not torch.equal(a, x)


def test_padding_scales_with_image_size():
    assert [padding_for(h) for h in (8, 28, 32, 64, 224)] == [1, 4, 4, 8, 28]


def test_fit_with_augmentation_is_seeded_and_reports_data_and_step_time(tiny_data, tiny_model_cfg):
    def run(augment):
        torch.manual_seed(0)
        model = build_for(tiny_model_cfg, tiny_data)
        cfg = TrainConfig(epochs=2, batch_size=32)
        return model, fit(model, tiny_data, cfg, seed=0, device=torch.device("cpu"), augment=augment)

    (m1, r1), (m2, _), (m3, _) = run(True), run(True), run(False)
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(m1.parameters(), m3.parameters()))
    for record in r1.history:
        assert record["data_time"] > 0 and record["step_time"] > 0
        assert record["data_time"] + record["step_time"] <= record["epoch_time"]
