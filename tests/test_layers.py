"""The shared window partition against the reshapes each paper writes down (independent formulas)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vt_backbones import layers
from vt_backbones.layers import (MASKED, attention, ceil_div, gathered_bias, pad_hw, relative_position_bias,
                                 relative_position_index, shorter_side, spanning_window_grid, window_attn_mask,
                                 window_grid)


def adjacent_windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """Swin: ``[B, H, W, C]`` -> ``[B * nW, w * w, C]``, windows of adjacent tokens."""
    B, H, W, C = x.shape
    return x.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, C)


def strided_windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """Shuffle / GG: ``w x w`` windows whose tokens are ``H / w`` rows apart (one per block of the map)."""
    B, H, W, C = x.shape
    return x.view(B, w, H // w, w, W // w, C).permute(0, 2, 4, 1, 3, 5).reshape(-1, w * w, C)


def interval_groups(x: torch.Tensor, interval: int) -> torch.Tensor:
    """CrossFormer LDA: ``interval ** 2`` groups of tokens sampled every ``interval`` rows/columns."""
    B, H, W, C = x.shape
    g_h, g_w = H // interval, W // interval
    x = x.view(B, g_h, interval, g_w, interval, C).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, g_h * g_w, C)


@pytest.mark.parametrize('H, W', [(14, 21), (28, 28)])
def test_dilated_windows_match_the_papers_reshapes(H, W):
    x = torch.randn(2, H, W, 5)
    grid = window_grid(H, W, (7, 7))
    torch.testing.assert_close(grid.partition(x), adjacent_windows(x, 7), rtol=0, atol=0)
    assert grid.mask is None

    shuffled = window_grid(H, W, (7, 7), dilation=(H // 7, W // 7))
    torch.testing.assert_close(shuffled.partition(x), strided_windows(x, 7), rtol=0, atol=0)
    torch.testing.assert_close(shuffled.reverse(shuffled.partition(x)), x, rtol=0, atol=0)

    lda = window_grid(H, W, (H // 7, W // 7), dilation=(7, 7))
    torch.testing.assert_close(lda.partition(x), interval_groups(x, 7), rtol=0, atol=0)


def test_dilated_padding_is_masked_and_cropped():
    H, W = 10, 17
    grid = window_grid(H, W, (7, 7), dilation=(2, 3))
    assert (grid.padded_height, grid.padded_width) == (14, 21)
    x = torch.randn(1, H, W, 3)
    torch.testing.assert_close(grid.reverse(grid.partition(x)), x, rtol=0, atol=0)
    # a real token may attend exactly to the real tokens of its window (the slots that `reverse` reads)
    is_real = torch.zeros(grid.num_windows * 49, dtype=torch.bool)
    is_real[grid.reverse_index] = True
    is_real = is_real.view(grid.num_windows, 49)
    assert is_real.sum() == H * W
    allowed = is_real[:, :, None] & is_real[:, None, :]
    assert grid.mask.dtype == torch.bool and grid.mask[allowed].all()
    assert not grid.mask[is_real[:, :, None] & ~is_real[:, None, :]].any()


def test_shift_with_dilation_is_rejected():
    with pytest.raises(ValueError, match='dilation'):
        window_grid(14, 14, (7, 7), (3, 3), None, (2, 2))


# Swin's shifted windows with padding (and a map smaller than a window), dilated windows, CrossFormer's groups.
GRIDS_FOR_VIEWS = [(17, 23, (7, 7), (3, 3), (1, 1)), (5, 6, (7, 7), (3, 3), (1, 1)), (20, 13, (3, 4), (0, 0), (2, 3)),
                   (28, 28, (4, 4), (0, 0), (7, 7))]


@pytest.mark.parametrize('H, W, window, shift, dilation', GRIDS_FOR_VIEWS)
def test_partition_by_views_equals_the_gathers_in_values_and_gradients(H, W, window, shift, dilation, monkeypatch):
    """What static-shape block graphs compiled for a CPU run (`layers.tracing_static_blocks_for_cpu`: pad, roll and
    permuted views) moves every token where eager's two gathers do, forward and backward, bit for bit. Only the
    padding slots differ (zeros there, real tokens that the mask hides here)."""
    grid = window_grid(H, W, window, shift, None, dilation)
    x = torch.randn(2, H, W, 5, requires_grad=True)

    def round_trip() -> tuple[torch.Tensor, ...]:
        windows = grid.partition(x)
        back = grid.reverse(windows * torch.arange(windows.shape[1])[:, None])  # position-dependent gradients
        weights = torch.randn(back.shape, generator=torch.Generator().manual_seed(0))
        return (windows, back, *torch.autograd.grad((back * weights).sum(), x))

    gathered = round_trip()
    monkeypatch.setattr(layers, 'tracing_static_blocks_for_cpu', lambda t: True)
    by_views = round_trip()
    real = grid.reverse_index
    torch.testing.assert_close(by_views[0].reshape(2, -1, 5)[:, real], gathered[0].reshape(2, -1, 5)[:, real],
                               rtol=0, atol=0)
    for got, expected in zip(by_views[1:], gathered[1:]):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_gathered_bias_operator_equals_the_gather_in_values_and_gradients():
    """The opaque operator inductor's CPU graphs call for the relative-position bias (`layers.gathered_bias`)
    against the inline gather, and PyTorch's own checks of a custom operator (schema, fake tensor, autograd)."""
    table = torch.randn(13 * 11, 3, dtype=torch.float64, requires_grad=True)
    index = relative_position_index(7, 6)
    bias = gathered_bias(table, index)
    assert bias.is_contiguous()
    torch.testing.assert_close(bias, relative_position_bias(table, (7, 6)), rtol=0, atol=0)
    # Swin's definition, token by token: query (r, c) and key (r', c') read row (r - r' + 6) * 11 + (c - c' + 5).
    tokens = [(r, c) for r in range(7) for c in range(6)]
    expected = torch.stack([torch.stack([table[(r - r2 + 6) * 11 + (c - c2 + 5)] for r2, c2 in tokens])
                            for r, c in tokens]).permute(2, 0, 1)
    torch.testing.assert_close(bias, expected, rtol=0, atol=0)
    torch.autograd.gradcheck(lambda t: gathered_bias(t, index), (table,))
    torch.library.opcheck(gathered_bias, (table, index))


class _Grids(torch.nn.Module):
    """The index tensors of a shifted and a spanning grid of the input's ``H x W`` map."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        H, W = x.shape[1], x.shape[2]
        shifted = window_grid(H, W, (7, 7), (3, 3), x.device)
        spanning = spanning_window_grid(H, W, (7, 7), x.device)
        return [shifted.partition_index, shifted.reverse_index, shifted.mask, spanning.partition_index,
                spanning.reverse_index, spanning.mask, shifted.reverse(shifted.partition(x))]


@pytest.mark.slow
def test_grids_traced_with_symbolic_sizes_equal_eager_at_other_sizes():
    """torch.export (what the ONNX export and dynamic-shape torch.compile trace) computes the indices and masks
    from the symbolic size: the one program gives, at sizes it was not traced at, the eager tensors exactly."""
    dynamic = torch.export.Dim.DYNAMIC
    program = torch.export.export(_Grids(), (torch.randn(2, 23, 30, 3),),
                                  dynamic_shapes=({1: dynamic, 2: dynamic},), strict=False).module()
    for H, W in [(14, 14), (9, 50), (49, 8)]:
        x = torch.randn(2, H, W, 3)
        traced, eager = program(x), _Grids()(x)
        for got, expected in zip(traced, eager):  # the traced graph has an all-True mask where eager has none
            torch.testing.assert_close(got, expected if expected is not None else torch.ones_like(got),
                                       rtol=0, atol=0)


class _PaddedInCond(torch.nn.Module):
    """Pads the map to a multiple of 4 inside a `torch.cond` branch (CrossFormer's stages 2-4)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def padded_sum(x: torch.Tensor) -> torch.Tensor:
            H, W = x.shape[1], x.shape[2]
            return pad_hw(x, ceil_div(H, 4) * 4, ceil_div(W, 4) * 4, value=1.0).sum(dim=(1, 2)).flatten()

        return torch.cond(shorter_side(x.shape[1], x.shape[2]) <= 7, padded_sum, padded_sum, (x,))


def test_padding_inside_torch_cond_follows_the_size():
    """Dynamo traces a cond branch, where symbolic sizes pass as ints: `is_symbolic` must still say so. Traced at a
    size that needs no padding, the branch once dropped the pad (under a guard that ONNX does not keep)."""
    dynamic = torch.export.Dim.DYNAMIC
    model = _PaddedInCond()
    program = torch.export.export(model, (torch.randn(2, 36, 40, 3),),
                                  dynamic_shapes=({0: dynamic, 1: dynamic, 2: dynamic},), strict=False).module()
    for H, W in [(36, 40), (13, 17), (5, 6)]:
        x = torch.randn(1, H, W, 3)
        torch.testing.assert_close(program(x), model(x))


@pytest.mark.parametrize('per_window', [False, True], ids=['bias', 'bias+mask'])
def test_attention_with_a_learned_mask_equals_sdpa_in_values_and_gradients(per_window):
    """On a CPU, `attention` writes out softmax(q k^T / sqrt(d) + mask) v when the mask needs a gradient; it must
    agree with PyTorch's SDPA (the path everything else takes), outputs and all four gradients, on Swin's masks."""
    torch.manual_seed(0)
    grid = window_grid(9, 11, (3, 3), (1, 1))  # shifted and padded: regions and padding masked
    B_, heads, N, d = 2 * grid.num_windows, 2, 9, 4
    q, k, v = (torch.randn(B_, heads, N, d, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = torch.randn(heads, N, N, dtype=torch.float64, requires_grad=True)
    mask = window_attn_mask(bias, grid.mask if per_window else None, B_)
    assert mask.requires_grad and bool((mask == MASKED).any()) == per_window
    ours = attention(q, k, v, mask)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    grad = torch.randn_like(ours)
    torch.testing.assert_close(ours, reference)
    for got, want in zip(torch.autograd.grad(ours, (q, k, v, bias), grad, retain_graph=True),
                         torch.autograd.grad(reference, (q, k, v, bias), grad)):
        torch.testing.assert_close(got, want)
    # The written-out path really ran (no SDPA node in the graph), and without a gradient SDPA runs.
    assert 'ScaledDotProduct' not in type(ours.grad_fn).__name__
    with torch.no_grad():
        assert torch.equal(attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
