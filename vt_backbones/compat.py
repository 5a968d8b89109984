"""Fixes that make mmengine 0.10.7 work on today's PyTorch; applied on import, idempotent.

1. Weights-only checkpoint loading (every machine).
   torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine calls ``torch.load``
   without the argument, so its own checkpoints (Runner resume, ``load_from``,
   ``init_cfg=dict(type='Pretrained')``, ``load_checkpoint``, ``CheckpointLoader``) are refused
   for the few non-tensor objects it writes. Instead of ``weights_only=False`` we add exactly
   those objects to ``torch.serialization.add_safe_globals`` (found with
   ``torch.serialization.get_unsafe_globals_in_checkpoint`` on Runner checkpoints):

   - ``mmengine.logging.history_buffer.HistoryBuffer``: the values of
     ``message_hub['log_scalars']``. Its ``__setstate__`` only stores the state dict on the
     instance and merges ``statistics_methods`` into its method table.
   - ``builtins.getattr``, bound to ``_history_buffer_method`` and not to the real ``getattr``:
     ``HistoryBuffer.__getstate__`` pickles its statistics methods as
     ``getattr(HistoryBuffer, 'min')`` (and ``max``, ``current``, ``mean``). The stand-in resolves
     exactly those four names on that class and raises for anything else, so a checkpoint still
     cannot use ``getattr`` to reach arbitrary attributes.
   - numpy, for the ``float64``/``int64`` arrays inside ``HistoryBuffer`` and the numpy scalars in
     ``message_hub['runtime_info']``: ``eta`` (``float64``) and, with ``save_best``, ``best_score``
     (``float32`` from mmseg's ``IoUMetric``): ``numpy._core.multiarray._reconstruct`` and
     ``numpy.ndarray`` (arrays), ``numpy._core.multiarray.scalar`` (scalars), ``numpy.dtype`` (called
     to make a dtype) and ``numpy.dtypes.Float32DType``/``Float64DType``/``Int64DType``: the unpickler
     sets state only on allowlisted types, so these three are the only dtypes a checkpoint can build
     (object, void and other dtypes stay refused). The two ``multiarray`` functions are also allowed
     under their numpy 1 names, ``numpy.core.multiarray.*``, for checkpoints written with numpy 1.

   Everything else mmengine writes (tensors, ``OrderedDict``, ``Counter`` from ``MultiStepLR``,
   plain containers and scalars) is allowed by torch already.

2. Distributed runs on a machine without CUDA (patched only when mmengine finds no accelerator):

   - ``mmengine.dist.utils._init_dist_pytorch`` (pytorch launcher) calls
     ``torch.cuda.set_device``; it is wrapped to skip that and to use gloo where nccl was asked for.
   - ``MMDistributedDataParallel`` is built by ``Runner.wrap_model`` with
     ``device_ids=[LOCAL_RANK]``, which DDP rejects for CPU modules; the wrapper drops
     ``device_ids`` and reverts SyncBN layers (from ``cfg.sync_bn`` or built directly) to BN.
   - ``SyncBN`` in the registry is replaced by mmengine's ``_BatchNormXd`` (what mmengine's own
     ``revert_sync_batchnorm`` produces), since ``nn.SyncBatchNorm`` refuses CPU input when the
     world size is above 1: GPU configs with ``norm_cfg=dict(type='SyncBN')`` run unchanged.
"""
from __future__ import annotations

import functools
import pickle
from typing import Any, Callable

import numpy as np
import torch
from mmengine.device import get_device
from mmengine.dist import utils as dist_utils
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.model.utils import _BatchNormXd
from mmengine.registry import MODELS
from torch import nn

_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_method(owner: type, name: str) -> Callable:
    """Stand-in for ``getattr`` in weights-only loads: resolves HistoryBuffer's statistics only."""
    if owner is not HistoryBuffer or name not in _HISTORY_BUFFER_METHODS:
        raise pickle.UnpicklingError(f'getattr({owner!r}, {name!r}) is not allowed in a weights-only load')
    return getattr(owner, name)


def _allow_mmengine_checkpoints() -> None:
    """Allowlist the non-tensor objects of mmengine checkpoints (adding twice is harmless)."""
    multiarray = np._core.multiarray
    torch.serialization.add_safe_globals([
        HistoryBuffer,
        (_history_buffer_method, 'builtins.getattr'),
        multiarray._reconstruct,
        multiarray.scalar,
        (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy.core.multiarray.scalar'),
        np.ndarray,
        np.dtype,
        np.dtypes.Float32DType,
        np.dtypes.Float64DType,
        np.dtypes.Int64DType,
    ])


def _patch_once(owner: Any, name: str, make_wrapper: Callable[[Callable], Callable]) -> None:
    """Replace ``owner.name`` by ``make_wrapper(original)`` unless that was done already."""
    original = getattr(owner, name)
    if getattr(original, '_vt_compat', False):
        return
    wrapper = functools.wraps(original)(make_wrapper(original))
    wrapper._vt_compat = True
    setattr(owner, name, wrapper)


def _init_dist_without_cuda(original: Callable) -> Callable:
    """``_init_dist_pytorch`` for a machine without CUDA."""
    def init(backend: str, init_backend: str = 'torch', **kwargs: Any) -> None:
        if init_backend != 'torch':
            return original(backend, init_backend=init_backend, **kwargs)
        # Same env:// init as mmengine, minus torch.cuda.set_device; nccl needs CUDA.
        torch.distributed.init_process_group(backend='gloo' if backend == 'nccl' else backend, **kwargs)
    return init


def _ddp_without_cuda(original: Callable) -> Callable:
    """``MMDistributedDataParallel.__init__`` for a CPU module."""
    def init(self: MMDistributedDataParallel, module: nn.Module, detect_anomalous_params: bool = False,
             **kwargs: Any) -> None:
        kwargs.pop('device_ids', None)  # DDP takes no device_ids for a CPU module
        original(self, revert_sync_batchnorm(module), detect_anomalous_params, **kwargs)
    return init


def _build_syncbn_as_bn() -> None:
    """Make ``norm_cfg=dict(type='SyncBN')`` build a plain BatchNorm."""
    try:
        import mmcv.cnn  # noqa: F401  registers 'SyncBN' itself, so ours must come after it
    except ImportError:
        return  # without mmcv nothing registers or builds 'SyncBN'
    MODELS.register_module('SyncBN', module=_BatchNormXd, force=True)


_allow_mmengine_checkpoints()
if get_device() == 'cpu':
    _patch_once(dist_utils, '_init_dist_pytorch', _init_dist_without_cuda)
    _patch_once(MMDistributedDataParallel, '__init__', _ddp_without_cuda)
    _build_syncbn_as_bn()
