"""vt_backbones: vision-transformer backbones for mmdet 3.x and mmseg 1.x.

``import vt_backbones`` registers every backbone in the ``vt_backbones`` registry scope (a child of mmengine's
``MODELS``) and ``IterationSeedHook`` in mmengine's ``HOOKS`` (`vt_backbones.engine`), and applies the compatibility
fixes for today's PyTorch with our checkpoint and CPU AMP features (`vt_backbones.compat.apply_patches`), unless the
environment sets ``VT_BACKBONES_NO_PATCHES=1`` (``vt_backbones.compat.remove_patches()`` reverts them later).
It also registers the ``hf-hub:`` checkpoint scheme with mmengine (`vt_backbones.weights`).
"""
from __future__ import annotations

import os
from typing import Any

from torch import nn

from . import compat, engine  # noqa: F401  (engine registers IterationSeedHook)
from . import models  # noqa: F401  (imports every family module, which registers its classes)
from . import weights
from .base import VisionBackbone
from .registry import MODELS

__version__ = '0.1.0'

if os.environ.get(compat.DISABLE_ENV) != '1':
    compat.apply_patches()
weights.register_checkpoint_schemes()  # hf-hub: references in load_from / init_cfg


def families() -> list[type[VisionBackbone]]:
    """The registered backbone classes, in registration order (family modules by name)."""
    return [cls for cls in MODELS.module_dict.values() if issubclass(cls, VisionBackbone) and cls.variants]


def _variant_table() -> dict[str, tuple[type[VisionBackbone], str]]:
    return {variant: (cls, arch) for cls in families() for variant, arch in cls.variants.items()}


def list_models() -> list[str]:
    """Names of every registered variant, e.g. ``['coat_lite_tiny', ..., 'swin_t', ...]``."""
    return list(_variant_table())


def create_backbone(name: str, **overrides: Any) -> nn.Module:
    """Builds a variant by name for plain PyTorch use: ``create_backbone('swin_t', out_indices=(3,))``."""
    table = _variant_table()
    if name not in table:
        raise ValueError(f'unknown model {name!r}; valid: {sorted(table)}')
    cls, arch = table[name]
    if 'arch' in overrides:
        raise ValueError(f'create_backbone({name!r}) fixes arch={arch!r}; for another architecture build the class: '
                         f'{cls.__name__}(arch=...)')
    return cls(arch=arch, **overrides)


def family_of(name: str) -> type[VisionBackbone]:
    """The class that builds a variant."""
    return _variant_table()[name][0]


# The family classes as attributes of the package (``vt_backbones.SwinTransformer``).
globals().update({cls.__name__: cls for cls in families()})
__all__ = ['MODELS', 'VisionBackbone', 'list_models', 'create_backbone', 'family_of', 'families',
           *(cls.__name__ for cls in families())]
