"""``AmpOptimWrapper`` on a machine without CUDA: mmengine 0.10.7's asserts an accelerator.

``vt_backbones.compat.apply_patches`` registers `CpuAmpOptimWrapper` as ``AmpOptimWrapper`` in mmengine's
``OPTIM_WRAPPERS`` only where mmengine finds no accelerator. It autocasts in bfloat16 on the CPU, without loss
scaling (bf16 has fp32's exponent range, so gradients do not underflow the way fp16's do):

- ``dtype='bfloat16'`` (what ``tools/train.py --amp`` asks on a CPU): bf16 autocast, always;
- no dtype or ``'float16'`` (the GPU recipes' fp16): bf16 when the CPU computes bf16 natively
  (AVX512-BF16 / AMX, as oneDNN reports), else fp32, because emulated bf16 is many times slower than
  fp32 (25-55x for linear and conv layers on an AVX2-only CPU).

mmcv's CPU kernels of ``roi_align`` and ``nms`` take no bf16 (float/double/half only), so under CPU
autocast they run outside it on fp32 inputs (`fp32_under_cpu_autocast`, `roi_align_under_cpu_autocast`;
their gradients flow back to the bf16 features). The precision used is logged. The loss scaler is disabled,
and its (empty) state is not written into checkpoints, so a CUDA run resuming a CPU checkpoint starts a fresh
scaler; a CPU run resuming a CUDA checkpoint ignores the saved scale. With CUDA, mmengine's class is
untouched: fp16 autocast and a dynamic ``GradScaler``, saved and restored with the optimizer.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import nn


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN: AVX512-BF16 or AMX)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


class CpuAmpOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` where mmengine finds no accelerator: bf16 autocast on the CPU (or fp32), unscaled."""

    def __init__(self, loss_scale: str | float | dict = 'dynamic', dtype: str | torch.dtype | None = None,
                 use_fsdp: bool = False, **kwargs: Any) -> None:
        OptimWrapper.__init__(self, **kwargs)  # mmengine's __init__ asserts CUDA/NPU/MLU/MUSA
        requested = str(dtype).removeprefix('torch.') if isinstance(dtype, torch.dtype) else dtype
        if requested not in (None, 'float16', 'bfloat16'):
            raise ValueError(f"optim_wrapper.dtype on a CPU must be 'bfloat16', 'float16' or None, got {dtype!r}")
        native = cpu_has_native_bf16()
        self.cast_dtype = torch.bfloat16 if requested == 'bfloat16' or native else None
        # bf16 keeps fp32's exponent range: no loss scaling. A disabled scaler's scale/unscale/step/update
        # are plain backward and optimizer.step (and clip_grad still clips the true gradients).
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self._scale_update_param = None
        precision = 'bf16 autocast' if self.cast_dtype else 'fp32 (AMP off)'
        support = 'computes bf16 natively' if native else 'has no native bf16 (emulated bf16 is many times slower)'
        print_log(f'AmpOptimWrapper without CUDA: {precision}, no loss scaling; the CPU {support}; the config '
                  f'asked dtype={dtype!r}, loss_scale={loss_scale!r}.', logger='current')

    def state_dict(self) -> dict:
        return OptimWrapper.state_dict(self)  # no 'loss_scaler': a disabled scaler has no state

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        if self.cast_dtype is None:  # fp32
            with OptimWrapper.optim_context(self, model):
                yield
        else:
            with OptimWrapper.optim_context(self, model), torch.autocast('cpu', dtype=self.cast_dtype):
                yield


def fp32_under_cpu_autocast(original: Callable) -> Callable:
    """An mmcv op ``op(tensor, tensor, ...)`` whose CPU kernel takes no bf16, run in fp32 under CPU autocast."""
    def op(first: Any, second: Any, *args: Any, **kwargs: Any) -> Any:
        on_cpu = isinstance(first, torch.Tensor) and first.device.type == 'cpu'  # nms also takes numpy arrays
        if not on_cpu or not torch.is_autocast_enabled('cpu'):
            return original(first, second, *args, **kwargs)
        with torch.autocast('cpu', enabled=False):
            return original(first.float(), second.float(), *args, **kwargs)
    return op


def roi_align_under_cpu_autocast(original: Callable) -> Callable:
    """``roi_align`` in fp32 under CPU autocast, its output in the features' dtype (mmdet's RoI extractor
    writes it into a tensor made like the features)."""
    fp32 = fp32_under_cpu_autocast(original)

    def roi_align(features: torch.Tensor, rois: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return fp32(features, rois, *args, **kwargs).to(features.dtype)
    return roi_align
