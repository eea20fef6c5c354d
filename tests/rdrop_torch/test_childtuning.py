"""rdrop_torch.childtuning: ChildTuning's mask math against independent references (numpy's
percentile and packbits, torch's clip_grad_norm_, the Fisher written as a plain mean)."""
import numpy as np
import pytest
import torch

from rdrop_torch import childtuning as ct


@pytest.mark.parametrize("p", [0.1, 0.3, 0.75, 1.0])
def test_top_p_matches_numpy_percentile_with_ties(p):
    g = torch.Generator().manual_seed(3)
    fisher = {"a": torch.rand(40, 7, generator=g), "b": (torch.rand(300, generator=g) * 8).floor() / 8}
    fisher["b"][:50] = 0.0  # ties, and zeros as unused rows give
    masks, threshold = ct.top_p_masks(fisher, p)
    allv = np.concatenate([f.reshape(-1).double().numpy() for f in fisher.values()])
    polar = np.percentile(allv, (1 - p) * 100)
    for n, f in fisher.items():
        assert torch.equal(masks[n], torch.from_numpy(f.double().numpy() >= polar)), n
    assert threshold == pytest.approx(polar, rel=1e-12, abs=1e-15)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept >= round(p * allv.size) - 1


@pytest.mark.parametrize("shape", [(3, 5), (8,), (2, 3, 7), (1,)])
def test_packed_masks_are_numpys_little_endian_bits(shape):
    """The storage of mask files and checkpoints: 8 entries a byte, entry i at bit i % 8."""
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(len(shape))) < 0.4
    packed = ct.pack_bits(mask)
    assert packed.dtype == torch.uint8
    assert packed.numpy().tolist() == np.packbits(mask.numpy().reshape(-1), bitorder="little").tolist()
    assert torch.equal(ct.unpack_bits(packed, shape), mask)
    with pytest.raises(ValueError, match="bits for"):
        ct.unpack_bits(packed, (packed.numel() * 8 + 1,))


def test_fisher_is_the_mean_of_clipped_squared_gradients():
    """Each batch's gradient clipped to norm 1 per parameter (torch's clip_grad_norm_ on that
    parameter alone, as the official code), squared, averaged over batches."""
    g = torch.Generator().manual_seed(0)
    batches = [{"w": torch.randn(4, 3, generator=g) * s, "b": torch.randn(3, generator=g)} for s in (0.1, 5.0, 1.0)]
    acc = ct.FisherAccumulator(clip_norm=1.0)
    for grads in batches:
        acc.add(grads)
    expected = {}
    for name in ("w", "b"):
        squares = []
        for grads in batches:
            holder = torch.nn.Parameter(torch.zeros_like(grads[name]))
            holder.grad = grads[name].clone()
            torch.nn.utils.clip_grad_norm_([holder], 1.0)
            squares.append(holder.grad ** 2)
        expected[name] = torch.stack(squares).mean(0)
    mean = acc.mean()
    for name in expected:
        torch.testing.assert_close(mean[name], expected[name])
    with pytest.raises(ValueError, match="no training batch"):
        ct.FisherAccumulator().mean()


def test_f_masks_are_seeded_by_seed_update_and_parameter():
    """The same (seed, update, parameter) draws the same keep mask on any worker; another update
    or parameter does not; kept entries are g / p, the others 0."""
    def keep(seed, update, index):
        gen = torch.Generator().manual_seed(ct.step_seed(seed, update, index))
        return ct.draw_keep(1000, 0.3, gen)

    assert torch.equal(keep(1, 5, 2), keep(1, 5, 2))
    assert not torch.equal(keep(1, 5, 2), keep(1, 6, 2)) and not torch.equal(keep(1, 5, 2), keep(1, 5, 3))
    grad = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    mask = keep(1, 5, 2)
    masked = ct.mask_gradient_(grad.clone(), mask, 0.3)
    torch.testing.assert_close(masked, torch.where(mask, grad / 0.3, torch.zeros_like(grad)))


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match="--childtuning-reserve-p must be in"):
        ct.check_reserve_p(0.0)
    with pytest.raises(ValueError, match="--childtuning-params-regex"):
        ct.resolve_pattern("F", "official", "(")
    with pytest.raises(ValueError, match="--childtuning-params 'heads'"):
        ct.resolve_pattern("D", "heads")
    assert ct.resolve_pattern("D", "official") == ct.PATTERNS["layers"]
    assert ct.select(["encoder.layers.0.fc1.weight", "encoder.embed_tokens.weight"], ct.PATTERNS["layers"]) == [True, False]
