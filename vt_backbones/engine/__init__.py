"""Training-side features of ours, laid out as mmdet's ``engine/``:

- ``checkpoints``: checkpoint files written atomically, ``resume=True`` falling back to the newest intact one;
- ``host_memory``: glibc keeping freed memory in CPU runs (tools/train.py and tools/test.py set it);
- ``hooks``: ``IterationSeedHook`` (registered in mmengine's ``HOOKS``), a resumed run repeating the uninterrupted
  one's random numbers;
- ``optim_wrappers``: ``AmpOptimWrapper`` without CUDA (bf16 autocast on the CPU) and mmcv's RoIAlign / NMS in
  fp32 under it;
- ``recipes``: the optimizer recipe each family declares, checked against its configs.

`vt_backbones.compat.apply_patches` (run by ``import vt_backbones``) installs the checkpoint and AMP features in
mmengine, with the compatibility fixes.
"""
from .checkpoints import checkpoint_problem
from .hooks import IterationSeedHook, iteration_seed
from .optim_wrappers import CpuAmpOptimWrapper, cpu_has_native_bf16
from .recipes import Recipe, swin_recipes

__all__ = ['checkpoint_problem', 'IterationSeedHook', 'iteration_seed', 'CpuAmpOptimWrapper', 'cpu_has_native_bf16',
           'Recipe', 'swin_recipes']
