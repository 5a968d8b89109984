"""Fixes that make mmengine 0.10.7 work on today's PyTorch, applied by `apply_patches` (which ``import
vt_backbones`` calls unless ``VT_BACKBONES_NO_PATCHES=1``) and reverted by `remove_patches`.

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

3. Checkpoints that survive a crash and a resume from the newest intact one (every machine).

4. ``AmpOptimWrapper`` on a machine without CUDA (registered in mmengine's place only then): bf16 autocast on
   the CPU, with mmcv's ``roi_align`` and ``nms`` run in fp32 under it.

   3 and 4 are features of ours rather than fixes: their code is in `vt_backbones.engine` (``checkpoints``,
   ``optim_wrappers``, which say what they do), and `apply_patches` installs them in mmengine with the fixes.

5. Inductor with dynamic shapes (``compile_blocks``; applied by the first block compilation, since importing
   inductor at ``import vt_backbones`` would cost seconds). torch 2.13's inductor orders the symbolic strides
   of some graph outputs without its ShapeEnv and fails on a comparison such as ``1 < s27**2`` ("cannot
   determine truth value of Relational"; pytorch/pytorch#185510, fix proposed in #185871): every Twins block
   failed to compile. ``torch._inductor.ir.get_fill_order`` is wrapped to take the ShapeEnv of the graph being
   compiled when it is called without one and the strides are symbolic, as the proposed fix does. Layout
   choice only: the compiled code computes the same values.
"""
from __future__ import annotations

import functools
import importlib
import pickle
from typing import Any, Callable

import numpy as np
import torch
from mmengine.device import get_device
from mmengine.dist import utils as dist_utils
from mmengine.fileio.backends import LocalBackend
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.model.utils import _BatchNormXd
from mmengine.registry import MODELS, OPTIM_WRAPPERS, Registry
from mmengine.runner import runner as runner_module
from torch import nn

from .engine.checkpoints import atomic_put, resume_from_intact
from .engine.optim_wrappers import CpuAmpOptimWrapper, fp32_under_cpu_autocast, roi_align_under_cpu_autocast

_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_method(owner: type, name: str) -> Callable:
    """Stand-in for ``getattr`` in weights-only loads: resolves HistoryBuffer's statistics only."""
    if owner is not HistoryBuffer or name not in _HISTORY_BUFFER_METHODS:
        raise pickle.UnpicklingError(f'getattr({owner!r}, {name!r}) is not allowed in a weights-only load')
    return getattr(owner, name)


def _allow_mmengine_checkpoints() -> None:
    """Allowlist the non-tensor objects of mmengine checkpoints (adding twice is harmless)."""
    before = torch.serialization.get_safe_globals()

    def restore() -> None:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)
    _UNDO.append(restore)
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
    """Replace ``owner.name`` by ``make_wrapper(original)`` unless that was done already (`remove_patches`
    puts the original back)."""
    original = getattr(owner, name)
    if getattr(original, '_vt_compat', False):
        return
    wrapper = functools.wraps(original)(make_wrapper(original))
    wrapper._vt_compat = True
    setattr(owner, name, wrapper)
    _UNDO.append(lambda: setattr(owner, name, original))


def _register_once(registry: Registry, name: str, module: type) -> None:
    """Register ``module`` as ``name`` in ``registry`` in place of the class there (put back by `remove_patches`)."""
    original = registry._module_dict.get(name)
    if original is module:
        return
    registry.register_module(name, module=module, force=True)
    _UNDO.append(lambda: registry._module_dict.pop(name) if original is None
                 else registry.register_module(name, module=original, force=True))


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
    _register_once(MODELS, 'SyncBN', _BatchNormXd)


def _mmcv_ops_in_fp32_under_cpu_autocast() -> None:
    try:  # the modules (mmcv.ops re-exports functions of the same names)
        nms_module = importlib.import_module('mmcv.ops.nms')
        roi_align_module = importlib.import_module('mmcv.ops.roi_align')
    except ImportError:  # mmcv without its compiled ops (mmcv-lite)
        return
    # RoIAlign.forward and batched_nms look these names up in their modules at call time.
    _patch_once(roi_align_module, 'roi_align', roi_align_under_cpu_autocast)
    _patch_once(nms_module, 'nms', fp32_under_cpu_autocast)


# ---- applying the fixes -----------------------------------------------------------------------------
#: ``VT_BACKBONES_NO_PATCHES=1``: ``import vt_backbones`` leaves mmengine, mmcv and torch as they are.
DISABLE_ENV = 'VT_BACKBONES_NO_PATCHES'
_UNDO: list[Callable[[], None]] = []  # how to revert each applied fix, in the order applied


def patches_applied() -> bool:
    return bool(_UNDO)


def apply_patches() -> None:
    """Applies the fixes of the module docstring, once (a second call does nothing). ``import vt_backbones``
    calls it unless the environment sets ``VT_BACKBONES_NO_PATCHES=1``; `remove_patches` reverts it."""
    if _UNDO:
        return
    # 1. mmengine's own checkpoints load under torch's weights-only default.
    _allow_mmengine_checkpoints()
    # 3. Checkpoint files are written atomically; resume=True skips a damaged latest checkpoint.
    _patch_once(LocalBackend, 'put', atomic_put)
    _patch_once(runner_module, 'find_latest_checkpoint', resume_from_intact)
    if get_device() == 'cpu':  # never on a machine with CUDA: GPU runs keep mmengine's code paths
        # 2. The pytorch launcher, DDP and SyncBN without CUDA.
        _patch_once(dist_utils, '_init_dist_pytorch', _init_dist_without_cuda)
        _patch_once(MMDistributedDataParallel, '__init__', _ddp_without_cuda)
        _build_syncbn_as_bn()
        # 4. AMP on the CPU: bf16 autocast (or fp32), mmcv's RoIAlign and NMS in fp32 under it.
        _register_once(OPTIM_WRAPPERS, 'AmpOptimWrapper', CpuAmpOptimWrapper)
        _mmcv_ops_in_fp32_under_cpu_autocast()


def _fill_order_with_graph_shape_env(get_fill_order: Callable) -> Callable:
    import sympy  # loaded by inductor already

    def fill_order(seq: Any, shape_env: Any = None) -> Any:
        if shape_env is None and any(isinstance(s, (torch.SymInt, sympy.Expr)) and not isinstance(s, sympy.Integer)
                                     for s in seq):
            from torch._inductor.virtualized import V
            shape_env = getattr(getattr(V.graph, 'sizevars', None), 'shape_env', None)
        return get_fill_order(seq, shape_env)
    return fill_order


def prepare_block_compilation() -> None:
    """Fix 5 of the module docstring, if the fixes are applied (`apply_patches`); called by the first
    ``compile_blocks`` compilation."""
    if patches_applied():
        from torch._inductor import ir as inductor_ir
        _patch_once(inductor_ir, 'get_fill_order', _fill_order_with_graph_shape_env)


def remove_patches() -> None:
    """Reverts everything `apply_patches` changed (e.g. to compare with plain mmengine in one process)."""
    while _UNDO:
        _UNDO.pop()()
