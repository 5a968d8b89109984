"""vt_backbones: vision-transformer backbones for mmdet 3.x and mmseg 1.x.

``import vt_backbones`` registers every backbone in the ``vt_backbones`` registry scope (a child of mmengine's
``MODELS``) and applies the compatibility fixes for today's PyTorch (`vt_backbones.compat.apply_patches`), unless
the environment sets ``VT_BACKBONES_NO_PATCHES=1`` (``vt_backbones.compat.remove_patches()`` reverts them later).
"""
from __future__ import annotations

import os
from typing import Any

from torch import nn

from . import compat
from .base import VisionBackbone
from .models import *  # noqa: F401,F403
from .models import __all__ as _families
from .registry import MODELS

__version__ = '0.1.0'

if os.environ.get(compat.DISABLE_ENV) != '1':
    compat.apply_patches()


def _variant_table() -> dict[str, tuple[type[VisionBackbone], str]]:
    table = {}
    for name in _families:
        cls = globals()[name]
        for variant, arch in cls.variants.items():
            table[variant] = (cls, arch)
    return table


def list_models() -> list[str]:
    """Names of every registered variant, e.g. ``['swin_t', 'swin_s', ...]``."""
    return list(_variant_table())


def create_backbone(name: str, **overrides: Any) -> nn.Module:
    """Builds a variant by name for plain PyTorch use: ``create_backbone('swin_t', out_indices=(3,))``."""
    table = _variant_table()
    if name not in table:
        raise ValueError(f'unknown model {name!r}; valid: {sorted(table)}')
    cls, arch = table[name]
    return cls(arch=arch, **overrides)


def family_of(name: str) -> type[VisionBackbone]:
    """The class that builds a variant."""
    return _variant_table()[name][0]


__all__ = ['MODELS', 'VisionBackbone', 'list_models', 'create_backbone', 'family_of', *_families]
