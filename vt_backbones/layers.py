"""Mechanics shared by every family: padding, window partition, masks, relative position bias,
fused attention, the block settings, the pre-norm block, MLP, drop path, patch embedding and merging.

Layouts: ``BHWC`` means a channels-last map ``[B, H, W, C]``; windows are ``[B * nW, N, C]`` with
``N = wh * ww`` tokens per window.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import compilation

# The attention logit of pairs that must not attend to each other, where a boolean mask is merged into a bias
# (`window_attn_mask`). A query always keeps itself as a key (same label, see `window_grid`), so no softmax row
# is ever fully masked.
MASKED = float('-inf')

_Fn = TypeVar('_Fn', bound=Callable)


def is_symbolic(*sizes: object) -> bool:
    """True if a size may be symbolic: a `torch.SymInt` (torch.export, torch.compile with dynamic shapes), or
    anything while dynamo traces, whose symbolic sizes pass ``isinstance(s, int)`` (torch.compile, and the
    branches of a `torch.cond` inside torch.export). A Python branch on such a size specialises the graph to one
    size (in a torch.cond branch: silently, under a guard that ONNX drops), so index and mask code must not branch."""
    return torch.compiler.is_compiling() or any(
        isinstance(s, torch.SymInt) or (isinstance(s, tuple) and is_symbolic(*s)) for s in sizes)


def cached_per_shape(maxsize: int) -> Callable[[_Fn], _Fn]:
    """Caches an index/mask builder per argument values in eager mode (it runs once per input size, not per
    forward), but calls it directly while torch.compile or torch.export traces the model or when a size is
    symbolic, so that traced graphs compute the indices from the input's shape instead of baking in the
    tensors of one size. The builders are written in torch ops on the sizes only, so both paths agree."""
    def decorate(build: _Fn) -> _Fn:
        cached = functools.lru_cache(maxsize=maxsize)(build)

        @functools.wraps(build)
        def get(*args, **kwargs):
            if is_symbolic(*args, *kwargs.values()):
                return build(*args, **kwargs)
            return cached(*args, **kwargs)

        get.cache_clear = cached.cache_clear
        return get  # type: ignore[return-value]
    return decorate


def drop_path_rates(depths: list[int] | tuple[int, ...], rate: float) -> list[list[float]]:
    """Linear stochastic-depth schedule over all blocks, split per stage (as Swin, timm, mmdet)."""
    total = sum(depths)
    rates = [rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
    out, start = [], 0
    for depth in depths:
        out.append(rates[start:start + depth])
        start += depth
    return out


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


@dataclass(frozen=True)
class BlockSettings:
    """What every block of a backbone shares, built once by the backbone and handed to its stages and blocks
    (a stage with other values, e.g. Twins' per-stage MLP ratio, passes ``dataclasses.replace(settings, ...)``).
    The drop path rate varies per block and is passed beside it."""
    mlp_ratio: float = 4.0  # hidden width of the MLP over its input width
    qkv_bias: bool = True  # biases in the query/key/value projections
    drop: float = 0.0  # dropout after the attention projection and in the MLP
    attn_drop: float = 0.0  # dropout on the attention weights
    norm_eps: float = 1e-5  # eps of the blocks' LayerNorms


class Mlp(nn.Module):
    """Transformer feed-forward: ``fc1 -> act -> drop -> fc2 -> drop`` on the last dimension."""

    def __init__(self, in_features: int, hidden_features: int, act_layer: type[nn.Module] = nn.GELU,
                 drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class PreNormBlock(nn.Module):
    """The pre-norm transformer block: ``x + drop_path(drop(attn(norm1(x), *context)))``, then
    ``x + drop_path(mlp(norm2(x)))``. ``[..., C]`` -> same shape.

    ``attn`` is the family's attention, which applies its own projections (its ``forward(x, *context)`` maps the
    normalised tokens to the projected output); ``context`` is what it needs besides the tokens (a `WindowGrid`,
    ...), computed once per stage. Family blocks subclass it to build their attention.
    """

    def __init__(self, dim: int, attn: nn.Module, settings: BlockSettings, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=settings.norm_eps)
        self.attn = attn
        self.drop = nn.Dropout(settings.drop)  # the official proj_drop
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=settings.norm_eps)
        self.mlp = Mlp(dim, int(dim * settings.mlp_ratio), drop=settings.drop)

    def forward(self, x: Tensor, *context: object) -> Tensor:
        # One expression: the attention's intermediate tensors are freed before the MLP (its widest) runs.
        x = x + self.drop_path(self.drop(self.attn(self.norm1(x), *context)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def pad_hw(x: Tensor, height: int, width: int, channels_last: bool = True, value: float = 0.0) -> Tensor:
    """Pads a feature map at the bottom/right to ``height x width`` for masked attention.

    ``[B, H, W, C]`` (``channels_last``) or ``[B, C, H, W]``. Every family pads tokens that attention
    must ignore through this one function or a gather by `unpadded_token_index` (which fills padding with real
    tokens), so tests can fill both with a large value and check that no output of a real token moves.
    """
    H, W = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
    if not is_symbolic(H, W, height, width) and H == height and W == width:
        return x
    pad = (0, width - W, 0, height - H)
    return F.pad(x, (0, 0) + pad if channels_last else pad, value=value)


def ceil_div(value: int, divisor: int) -> int:
    """``ceil(value / divisor)`` in integer arithmetic, so that it stays exact on symbolic sizes."""
    return (value + divisor - 1) // divisor  # non-negative floor divisions nest and simplify symbolically


def remainder(index: Tensor, divisor: int) -> Tensor:
    """``index % divisor`` (floor semantics, as Python's ``%``) written as ``index - index // divisor * divisor``:
    the ONNX exporter cannot translate a remainder by a symbolic size, but can a floor division."""
    return index - index // divisor * divisor


def unpadded_token_index(rows: Tensor, cols: Tensor, height: int, width: int) -> Tensor:
    """Flat indices into an ``H x W`` map (``[B, H * W, C]``) of positions ``(rows, cols)`` of its bottom/right
    padded frame, a padding position reading the real token its row and column wrap around to: a gather then pads
    without a padded copy of the map, for attention that masks the padding (any finite value is right there)."""
    return remainder(rows, height) * width + remainder(cols, width)


def shorter_side(H: int, W: int) -> int:
    """``min(H, W)`` that stays symbolic for the SymInt sizes of torch.export (Python's ``min`` would fix the
    traced size's answer) and still takes the tensors that ``torch.jit.trace`` gives as sizes (FLOP counters)."""
    if isinstance(H, Tensor) or isinstance(W, Tensor):
        return min(H, W)
    return torch.sym_min(H, W)


def round_up(value: int, multiple: int) -> int:
    return ceil_div(value, multiple) * multiple


def pad_to_multiple(x: Tensor, multiple: int, channels_last: bool = False) -> Tensor:
    """Zero-pads ``[B, C, H, W]`` (or ``[B, H, W, C]``) at the bottom/right to multiples of ``multiple``.

    The border a strided conv or a patch merging needs so that stage ``i`` has ``ceil(H / stride)`` rows:
    real zeros, as the conv's own padding. Tokens that attention must ignore are padded by `pad_hw` instead.
    """
    H, W = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
    if not is_symbolic(H, W) and H % multiple == 0 and W % multiple == 0:
        return x
    pad = (0, round_up(W, multiple) - W, 0, round_up(H, multiple) - H)
    return F.pad(x, (0, 0) + pad if channels_last else pad)


@dataclass(frozen=True)
class WindowGrid:
    """How an ``H x W`` map is cut into windows, cached per shape (`window_grid`).

    A window holds ``wh x ww`` tokens taken every ``dilation`` rows/columns: dilation 1 gives
    Swin's adjacent windows (optionally cyclically shifted), larger dilations the strided windows of
    Shuffle Transformer, GG-Transformer and CrossFormer's long-distance attention. One gather does
    the padding, the shift and the partition, one gather undoes them and crops, and ``mask``
    (boolean ``[nW, N, N]``, True where a query may attend to a key as in SDPA's boolean masks, or ``None``)
    keeps attention inside Swin's shifted regions and away from padded tokens. Boolean, so that it serves
    every dtype: see `window_attn_mask`.

    The gather pads without a padded copy of the map (`unpadded_token_index`): the mask hides a padding slot from
    every real query and `reverse` drops its output (a padded copy cost Swin-T 2% of a fwd+bwd step at 512x512).
    """
    height: int
    width: int
    padded_height: int
    padded_width: int
    window: tuple[int, int]
    partition_index: Tensor  # [nW * N] window slot -> token of the map (flattened); padding slots wrap around
    reverse_index: Tensor  # [H * W] real token -> window slot
    mask: Tensor | None
    shift: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)

    @property
    def num_windows(self) -> int:
        return self.partition_index.numel() // (self.window[0] * self.window[1])

    def partition(self, x: Tensor) -> Tensor:
        """``[B, H, W, C]`` -> ``[B * nW, N, C]``."""
        B, C = x.shape[0], x.shape[-1]
        # Inductor's CPU code turns a gather's backward into a scalar scatter-add loop (64 ms per Swin-T stage-1
        # block-step against eager's 35 ms); the views' backward is views again, fused into vector copies.
        if tracing_static_blocks_for_cpu(x):
            x = pad_hw(x, self.padded_height, self.padded_width)
            x = torch.roll(x, (-self.shift[0], -self.shift[1]), (1, 2)) if any(self.shift) else x
            return x.view(B, *self._blocked(C)).permute(0, 1, 3, 4, 6, 2, 5, 7).reshape(
                -1, self.window[0] * self.window[1], C)
        x = x.reshape(B, -1, C).index_select(1, self.partition_index)
        return x.view(B * self.num_windows, -1, C)

    def reverse(self, windows: Tensor) -> Tensor:
        """``[B * nW, N, C]`` -> ``[B, H, W, C]`` (shift undone, padding cropped)."""
        C = windows.shape[-1]
        if tracing_static_blocks_for_cpu(windows):
            (bh, wh, dh, bw, ww, dw, _) = self._blocked(C)
            x = windows.view(-1, bh, dh, bw, dw, wh, ww, C).permute(0, 1, 5, 2, 3, 6, 4, 7).reshape(
                -1, self.padded_height, self.padded_width, C)
            x = torch.roll(x, self.shift, (1, 2)) if any(self.shift) else x
            return x[:, :self.height, :self.width]
        x = windows.reshape(-1, self.partition_index.numel(), C)
        return x.index_select(1, self.reverse_index).view(-1, self.height, self.width, C)

    def _blocked(self, channels: int) -> tuple[int, ...]:
        """The padded map's rows and columns as (blocks, window, dilation) each: row ``(bh * wh + ih) * dh + oh``
        is token row ``ih`` of window row ``oh`` of block row ``bh`` (`window_grid`'s order)."""
        (wh, ww), (dh, dw) = self.window, self.dilation
        return (self.padded_height // (wh * dh), wh, dh, self.padded_width // (ww * dw), ww, dw, channels)


def tracing_static_blocks_for_cpu(x: Tensor) -> bool:
    """Whether torch.compile is tracing blocks compiled with static shapes (``compile_blocks=dict(dynamic=False)``)
    for a CPU: there `WindowGrid` moves tokens with pad, roll and permuted views instead of its gathers, and
    `relative_position_bias` gathers in an opaque operator, around two kernels of inductor's CPU code that were
    slower than eager (issue 24). Eager mode keeps the gathers (one copy each way); so do dynamic shapes (views of
    symbolic sizes add guards: a compilation per size), whole-model compilation and torch.export (their graphs must
    follow the size), and GPUs (measured as they are)."""
    return (compilation.static_shape_blocks_running and x.device.type == 'cpu' and torch.compiler.is_compiling()
            and not torch.compiler.is_exporting())  # the flag first: eager calls stop at one global read


@cached_per_shape(maxsize=64)
def window_grid(height: int, width: int, window: tuple[int, int], shift: tuple[int, int] = (0, 0),
                device: torch.device | None = None, dilation: tuple[int, int] = (1, 1),
                single_block: bool = False) -> WindowGrid:
    """The `WindowGrid` of an ``H x W`` map (``height``, ``width`` may be symbolic: see `cached_per_shape`).

    The map is padded at the bottom/right to multiples of ``window * dilation`` and rolled by
    ``-shift`` (Swin's cyclic shift; only without dilation). Each ``(wh * dh) x (ww * dw)`` block is
    cut into ``dh * dw`` windows; window ``(i, j)`` of a block holds its rows ``i, i + dh, ...`` and
    columns ``j, j + dw, ...``, in row-major order. Everything is arithmetic and comparisons on
    ``arange``s of the padded sides, so a traced graph recomputes it for any size. The mask is left out
    (``None``) only where it is known to allow every pair: no shift, no padding and concrete sizes.

    ``single_block`` states that ``window * dilation`` covers the map (`spanning_window_grid`,
    `interleaved_window_grid`): symbolic sizes cannot prove that the block count is 1, and the general block
    arithmetic on them costs torch.export minutes (and an unfinished CrossFormer export).
    """
    (wh, ww), (sh, sw), (dh, dw) = window, shift, dilation
    if (sh or sw) and (dh, dw) != (1, 1):
        raise ValueError(f'a cyclic shift needs dilation (1, 1), got shift={shift} dilation={dilation}')
    # Built from 1-D aranges by broadcasting, without views of symbolic shapes (each would need a guard).
    block_h, block_w = wh * dh, ww * dw
    if single_block:
        if not is_symbolic(height, width, block_h, block_w) and (block_h < height or block_w < width):
            raise ValueError(f'single_block needs window * dilation >= the map, got window={window} '
                             f'dilation={dilation} for {height}x{width}')
        blocks_h, blocks_w = 1, 1
    else:
        blocks_h, blocks_w = ceil_div(height, block_h), ceil_div(width, block_w)
    Hp, Wp = blocks_h * block_h, blocks_w * block_w
    # Window w = ((bh * dh + oh) * blocks_w + bw) * dw + ow of block (bh, bw), offset (oh, ow); token t = ih * ww + iw.
    win = torch.arange(blocks_h * dh * blocks_w * dw, device=device)[:, None]
    tok = torch.arange(wh * ww, device=device)[None, :]
    rows = win // (dw * blocks_w * dh) * block_h + tok // ww * dh + remainder(win // (dw * blocks_w), dh)  # [nW, N]
    cols = remainder(win // dw, blocks_w) * block_w + remainder(tok, ww) * dw + remainder(win, dw)
    # After the roll by -shift, position (r, c) holds the token from ((r + sh) % Hp, (c + sw) % Wp).
    source_rows, source_cols = remainder(rows + sh, Hp), remainder(cols + sw, Wp)
    partition_index = unpadded_token_index(source_rows, source_cols, height, width).reshape(-1)
    # The inverse: token (r, c) sits at rolled position ((r - sh) % Hp, (c - sw) % Wp), i.e. in the slot
    # of that position's window and token.
    r = remainder(torch.arange(height, device=device) - sh, Hp)
    c = remainder(torch.arange(width, device=device) - sw, Wp)
    window_row = (r // block_h * dh + remainder(r, dh)) * blocks_w * dw  # [H]
    window_col = c // block_w * dw + remainder(c, dw)  # [W]
    reverse_index = ((window_row[:, None] + window_col[None, :]) * (wh * ww)
                     + (remainder(r, block_h) // dh * ww)[:, None] + (remainder(c, block_w) // dw)[None, :]).reshape(-1)

    mask = None
    if sh or sw or is_symbolic(height, width) or Hp > height or Wp > width:
        # Labels: padding (1) or not, and with a shift Swin's regions, in the rolled frame: the last
        # `shift` rows/columns came around from the other side, the `window - shift` before them did not.
        labels = ((source_rows >= height) | (source_cols >= width)).long()  # [nW, N]
        if sh or sw:
            region_rows = (rows >= Hp - wh).long() + (rows >= Hp - sh).long()
            region_cols = (cols >= Wp - ww).long() + (cols >= Wp - sw).long()
            labels = labels * 9 + region_rows * 3 + region_cols
        mask = labels[:, :, None] == labels[:, None, :]  # a token always shares its own label
    return WindowGrid(height, width, Hp, Wp, window, partition_index, reverse_index, mask, shift, dilation)


def spanning_window_grid(height: int, width: int, window: tuple[int, int],
                         device: torch.device | None = None) -> WindowGrid:
    """``wh x ww`` windows whose tokens are spread over the whole (padded) map: window ``(i, j)`` holds rows
    ``i, i + Hp / wh, ...`` and columns ``j, j + Wp / ww, ...`` (Shuffle's spatial shuffle, GG's Glance)."""
    (wh, ww) = window
    return window_grid(height, width, window, (0, 0), device, (ceil_div(height, wh), ceil_div(width, ww)),
                       single_block=True)


def interleaved_window_grid(height: int, width: int, interval: tuple[int, int],
                            device: torch.device | None = None) -> WindowGrid:
    """``Ih x Iw`` windows of ``ceil(H / Ih) x ceil(W / Iw)`` tokens: window ``(i, j)`` holds rows ``i, i + Ih, ...``
    and columns ``j, j + Iw, ...`` of the map padded to multiples of the interval (CrossFormer's long-distance
    attention)."""
    return window_grid(height, width, (ceil_div(height, interval[0]), ceil_div(width, interval[1])), (0, 0), device,
                       interval, single_block=True)


@cached_per_shape(maxsize=32)
def relative_position_index(wh: int, ww: int, device: torch.device | None = None) -> Tensor:
    """``[N, N]`` index into a ``(2wh-1)(2ww-1)`` bias table for every (query, key) pair of a window."""
    rows = torch.arange(wh, device=device)[:, None].expand(wh, ww).reshape(-1)
    cols = torch.arange(ww, device=device)[None, :].expand(wh, ww).reshape(-1)
    return (rows[:, None] - rows[None, :] + wh - 1) * (2 * ww - 1) + (cols[:, None] - cols[None, :] + ww - 1)


def relative_position_bias(table: Tensor, window: tuple[int, int]) -> Tensor:
    """Gathers a ``[(2wh-1)(2ww-1), heads]`` table into the ``[heads, N, N]`` attention bias."""
    index = relative_position_index(*window, device=table.device)
    if tracing_static_blocks_for_cpu(table):
        return gathered_bias(table, index)
    return _gather_bias(table, index)


def _gather_bias(table: Tensor, index: Tensor) -> Tensor:
    N = index.shape[0]
    return table[index.view(-1)].view(N, N, -1).permute(2, 0, 1)


@torch.library.custom_op('vt_backbones::gathered_bias', mutates_args=())
def gathered_bias(table: Tensor, index: Tensor) -> Tensor:
    """`relative_position_bias` as an operator inductor cannot look into, for graphs it compiles for a CPU: its
    output is a buffer of its own, which the softmax reads with vector loads. Inlined, the gather became a scalar,
    bounds-checked load from the table for every element of every window in each of the softmax's three passes
    (issue 24: 72 ms per Swin-T stage-1 block-step against eager's 30 ms for gather, mask and softmax)."""
    return _gather_bias(table, index).contiguous()


@gathered_bias.register_fake
def _(table: Tensor, index: Tensor) -> Tensor:
    return table.new_empty((table.shape[1], index.shape[0], index.shape[0]))


def _gathered_bias_setup(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
    table, index = inputs
    ctx.save_for_backward(index)
    ctx.table_rows = table.shape[0]


def _gathered_bias_backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
    index, = ctx.saved_tensors
    heads = grad.shape[0]
    grad_table = grad.new_zeros((ctx.table_rows, heads))
    return grad_table.index_add_(0, index.view(-1), grad.permute(1, 2, 0).reshape(-1, heads)), None


gathered_bias.register_autograd(_gathered_bias_backward, setup_context=_gathered_bias_setup)


def attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
              dropout_p: float = 0.0, training: bool = False) -> Tensor:
    """Scaled dot-product attention ``softmax(q k^T / sqrt(d) + mask) v`` through PyTorch's fused kernel.

    ``q``: ``[B, heads, Nq, d]``, ``k``/``v``: ``[B, heads, Nk, d]``; ``attn_mask`` broadcasts to
    ``[B, heads, Nq, Nk]`` (a relative position bias, a padding mask, or both added).

    On a CPU, a mask that needs a gradient (a learned position bias, in training) is written out instead:
    PyTorch's CPU kernels have no backward for it, so SDPA would take its reference path, whose guard for rows
    without any allowed key (``isneginf``, ``all``, ``where``) costs more than the softmax itself (issue 24: the
    attention ~25% faster at Swin's stage-1 shapes, a fwd+bwd step 1-5%). Our masks always allow a query some
    key, so the guard's case never occurs. GPUs keep SDPA (their fused kernels differentiate the mask).
    """
    if (attn_mask is not None and attn_mask.requires_grad and torch.is_grad_enabled() and q.device.type == 'cpu'
            and not torch.compiler.is_exporting()):
        logits = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1)) + attn_mask
        return torch.matmul(F.dropout(logits.softmax(-1), dropout_p, training), v)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p if training else 0.0)
    if torch.compiler.is_exporting():
        # torch.export sees the fused CPU kernel's output layout and records the callers' head-merging reshape as
        # a view; the ONNX exporter then decomposes the kernel into one whose output cannot be viewed so. A
        # recorded copy to the standard layout keeps the graph valid for any decomposition.
        out = out.clone(memory_format=torch.contiguous_format)
    return out


def window_attn_mask(bias: Tensor | None, mask: Tensor | None, batch_windows: int) -> Tensor | None:
    """The SDPA mask of windowed attention: a ``[heads, Nq, Nk]`` bias shared by all windows and a per-window
    boolean ``[nW, Nq or 1, Nk]`` mask (True: may attend) -> ``[B * nW, heads or 1, Nq, Nk]`` (a view when B = 1;
    without a mask the bias stays ``[1, heads, Nq, Nk]``). 4-D, which keeps SDPA on its fused kernel (a 3-D mask
    takes the reference path).

    Without a bias the boolean mask goes to SDPA, which turns it into ``-inf`` logits in the queries' dtype; with
    one, the masked pairs of the bias become `MASKED`, in the bias's dtype. Never a float mask of a fixed dtype:
    torch 2.13's fused CPU kernel reads a float32 mask wrongly for float64 queries (silently: a relative error of
    about 3 on a 49-token window with a quarter of its keys masked).
    """
    if mask is None:
        return None if bias is None else bias[None]
    per_window = mask[:, None] if bias is None else torch.where(mask[:, None], bias, MASKED)  # [nW, heads or 1, Nq, Nk]
    if torch.compiler.is_exporting():
        # Whether the reshape below is a view depends on batch == 1: traced inside a torch.cond branch (CrossFormer's
        # small maps), that question became a guard on the example's batch. A repeat copies for every batch.
        return per_window.repeat(batch_windows // per_window.shape[0], 1, 1, 1)
    return per_window.expand(batch_windows // per_window.shape[0], *per_window.shape).reshape(
        batch_windows, *per_window.shape[1:])


def window_attention(qkv: Tensor, num_heads: int, bias: Tensor | None = None, mask: Tensor | None = None,
                     dropout_p: float = 0.0, training: bool = False) -> Tensor:
    """Multi-head attention inside every window: packed ``[B * nW, N, 3C]`` q, k, v -> ``[B * nW, N, C]``.

    ``bias`` (``[heads, N, N]``, e.g. a relative position bias) is shared by all windows; ``mask`` is a
    `WindowGrid`'s boolean ``[nW, N, N]`` per-window mask (see `window_attn_mask`).
    """
    B_, N, C3 = qkv.shape
    q, k, v = qkv.view(B_, N, 3, num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    x = attention(q, k, v, window_attn_mask(bias, mask, B_), dropout_p, training)
    return x.transpose(1, 2).reshape(B_, N, C3 // 3)


def bhwc_to_nchw(x: Tensor) -> Tensor:
    return x.permute(0, 3, 1, 2).contiguous()


class PatchEmbed(nn.Module):
    """Patch embedding: zero-pads the image to a patch multiple, then a conv with stride ``patch_size``.

    ``[B, C_in, H, W]`` -> ``[B, ceil(H / p), ceil(W / p), C]`` (channels last), with an optional
    LayerNorm on the tokens. The kernel is the patch (non-overlapping) unless ``kernel_size`` and ``padding``
    give an overlapping one (e.g. Focal's "useconv" 7x7 stem).
    """

    def __init__(self, in_channels: int, embed_dims: int, patch_size: int, norm: bool = True,
                 kernel_size: int | None = None, padding: int = 0) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dims, kernel_size=kernel_size or patch_size, stride=patch_size,
                              padding=padding)
        self.norm = nn.LayerNorm(embed_dims) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(pad_to_multiple(x, self.patch_size)).permute(0, 2, 3, 1)
        return self.norm(x) if self.norm is not None else x


class PatchMerging(nn.Module):
    """Swin's patch merging (also GG-Transformer's): concatenates each 2x2 neighbourhood, LayerNorm, linear
    4C -> 2C. ``[B, H, W, C]`` -> ``[B, ceil(H/2), ceil(W/2), 2C]`` (an odd side zero-padded by one)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = pad_to_multiple(x, 2, channels_last=True)
        # Official channel order: offsets (0,0), (1,0), (0,1), (1,1) as (row, column).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class ConvPositionEncoding(nn.Module):
    """``x + dwconv(x)`` with zero padding (CPVT's PEG in Twins, CoaT's CPE). ``[B, C, H, W]`` -> same shape."""

    def __init__(self, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj(x)
