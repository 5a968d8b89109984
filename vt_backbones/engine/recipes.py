"""The optimizer recipes the families declare (``VisionBackbone.recipes``): what their configs under ``configs/``
use, checked against those configs by ``tests/test_configs.py``."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """The optimizer of a family's published (or borrowed) training recipe for one task: what its configs under
    ``configs/`` use (AdamW), checked by ``tests/test_configs.py``."""
    lr: float
    weight_decay: float
    no_decay: tuple[str, ...] = ()  # paramwise custom_keys with decay_mult=0 (empty: decay on every parameter)
    betas: tuple[float, float] = (0.9, 0.999)


#: what Swin's official dense configs exclude from weight decay (besides its absolute position embedding)
SWIN_NO_DECAY = ('relative_position_bias_table', 'norm')


def swin_recipes(no_decay: tuple[str, ...]) -> dict[str, Recipe]:
    """The optimizer of Swin's official dense configs (Mask R-CNN: AdamW 1e-4, weight decay 0.05; UperNet: 6e-5,
    0.01), which the families without published dense configs borrow, with their own ``no_decay`` keys."""
    return {'mmdet': Recipe(lr=1e-4, weight_decay=0.05, no_decay=no_decay),
            'mmseg': Recipe(lr=6e-5, weight_decay=0.01, no_decay=no_decay)}
