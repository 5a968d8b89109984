"""The registry of vt_backbones: a child of mmengine's ``MODELS`` in scope ``vt_backbones``.

Configs of mmdet 3.x and mmseg 1.x reach our classes as ``type='vt_backbones.SwinTransformer'``
after ``custom_imports=dict(imports=['vt_backbones'])`` (the pattern mmpretrain uses).
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='vt_backbones',
                  locations=['vt_backbones.models'])
