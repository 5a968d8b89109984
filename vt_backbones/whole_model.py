"""Whole trained detectors and segmentors of the official repositories, into our mmdet 3 / mmseg 1 models.

The official detection and segmentation code of these backbones are forks of mmdet 2.x and mmseg 0.x
(Swin: mmdet 2.11 / mmseg 0.11; Twins: mmdet 2.8; CrossFormer: mmdet 2.26 / mmseg 0.29). Their checkpoints
hold ``{'meta': {..., 'CLASSES': ...}, 'state_dict': {'backbone.*', 'neck.*', 'rpn_head.*', 'roi_head.*'
| 'decode_head.*', 'auxiliary_head.*'}, 'optimizer': ...}``.

- ``backbone.*`` goes through the family converter (`convert.convert_state_dict`), into the backbone the
  config builds; what it drops (rebuilt index buffers and masks) is reported.
- The neck and heads of these architectures kept their parameter names from mmdet 2.x to 3.x and from
  mmseg 0.x to 1.x (FPN ``lateral_convs`` / ``fpn_convs``; RPNHead ``rpn_conv`` / ``rpn_cls`` / ``rpn_reg``;
  the bbox heads ``shared_convs`` / ``shared_fcs`` / ``fc_cls`` / ``fc_reg``, per stage ``bbox_head.<i>`` in
  Cascade R-CNN; FCNMaskHead ``convs`` / ``upsample`` / ``conv_logits``; UPerHead ``psp_modules`` /
  ``bottleneck`` / ``lateral_convs`` / ``fpn_convs`` / ``fpn_bottleneck`` / ``conv_seg``; FCNHead ``convs`` /
  ``conv_seg``): they are taken by name, and each must exist in the target model with the same shape.

Anything of the file the model has no place for, anything the model needs that the file lacks, and any
shape difference (e.g. another number of classes) is an error naming the keys: the result loads
``strict=True``, and nothing is dropped silently.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from torch import Tensor, nn

from .convert import (ConversionError, ConversionReport, StateDict, _abbreviate, convert_state_dict, read_checkpoint,
                      save_atomically, skipped_objects, unwrap)

BACKBONE = 'backbone.'


@dataclass
class WholeModelReport:
    backbone: ConversionReport
    taken: int = 0  # neck and head tensors taken by name
    classes: tuple[str, ...] | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f'backbone: {self.backbone.summary()}', f'neck and heads: {self.taken} tensors taken by name']
        if self.classes:
            lines.append(f'classes ({len(self.classes)}): {_abbreviate(list(self.classes))}')
        if self.skipped:
            lines.append(f'skipped non-tensor objects (not built): {_abbreviate(list(self.skipped))}')
        return '\n'.join(lines)


def task_of(state_dict: Mapping[str, Tensor]) -> str:
    """``'detection'`` (mmdet two-stage), ``'cascade'`` (Cascade R-CNN) or ``'segmentation'`` (mmseg)."""
    if any(k.startswith('roi_head.bbox_head.0.') for k in state_dict):
        return 'cascade'
    if any(k.startswith('roi_head.') for k in state_dict):
        return 'detection'
    if any(k.startswith('decode_head.') for k in state_dict):
        return 'segmentation'
    raise ConversionError(f'not a whole detector or segmentor (no roi_head.* or decode_head.* keys; first keys: '
                          f'{list(state_dict)[:3]})')


def convert_whole_state_dict(state_dict: StateDict, model: nn.Module) -> tuple[StateDict, WholeModelReport]:
    """An official mmdet 2.x / mmseg 0.x state_dict -> one ``model`` (mmdet 3 / mmseg 1) loads strictly."""
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    task_of(state_dict)  # a clear error for a backbone-only or foreign file
    backbone, backbone_report = convert_state_dict(
        {k[len(BACKBONE):]: v for k, v in state_dict.items() if k.startswith(BACKBONE)}, model=model.backbone)
    converted = {BACKBONE + k: v for k, v in backbone.items()}
    rest = {k: v for k, v in state_dict.items() if not k.startswith(BACKBONE)}
    converted.update(rest)

    target = model.state_dict()
    missing = sorted(k for k in target if k not in converted)
    unexpected = sorted(k for k in converted if k not in target)
    misshaped = sorted(f'{k}: checkpoint {list(converted[k].shape)} vs model {list(target[k].shape)}'
                       for k in converted.keys() & target.keys() if converted[k].shape != target[k].shape)
    problems = [f'{label} ({len(keys)}): {_abbreviate(keys, 10)}'
                for label, keys in (('missing', missing), ('unexpected', unexpected), ('mis-shaped', misshaped))
                if keys]
    if problems:
        raise ConversionError(f'the checkpoint does not fit the {type(model).__name__} of the config:\n  '
                              + '\n  '.join(problems))
    return converted, WholeModelReport(backbone_report, taken=len(rest))


def build_model(config: str) -> nn.Module:
    """The model of an mmdet / mmseg config, built on the CPU (its backbone's pretrained weights not loaded)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return MODELS.build(cfg.model)


def default_config(state_dict: Mapping[str, Tensor], configs_dir: str) -> str:
    """Our config for a checkpoint whose config is not given: ``configs/{maskrcnn,cascade_maskrcnn,upernet}_<variant>``."""
    task = task_of(state_dict)
    backbone = {k[len(BACKBONE):]: v for k, v in state_dict.items() if k.startswith(BACKBONE)}
    _, report = convert_state_dict(backbone)  # the variant, detected from the backbone's keys
    prefix = {'detection': 'maskrcnn', 'cascade': 'cascade_maskrcnn', 'segmentation': 'upernet'}[task]
    # The 1x and 3x configs of a variant build the same model; the 3x one is the only one of some.
    for name in (f'{prefix}_{report.model}.py', f'{prefix}_{report.model}_3x.py'):
        if os.path.isfile(os.path.join(configs_dir, name)):
            return os.path.join(configs_dir, name)
    raise ConversionError(f'no config of ours for this {task} checkpoint of {report.model} ({prefix}_'
                          f'{report.model}.py); pass --config CONFIG (an mmdet / mmseg config of the same architecture)')


def convert_whole_file(src: str, dst: str, config: str | None = None, configs_dir: str = 'configs') -> WholeModelReport:
    """Converts an official trained detector / segmentor to ``dst`` for ``config`` (written atomically).

    ``src`` is a file, a URL (downloaded into the cache once) or an ``hf-hub:`` reference.
    """
    from .weights import fetch

    local = fetch(src)
    checkpoint = read_checkpoint(local)
    state_dict, _ = unwrap(checkpoint)
    config = config or default_config(state_dict, configs_dir)
    converted, report = convert_whole_state_dict(state_dict, build_model(config))
    report.skipped = skipped_objects(checkpoint)
    source_meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), Mapping) else {}
    classes = source_meta.get('CLASSES')  # mmdet 2.x / mmseg 0.x; mmdet 3 / mmseg 1 keep dataset_meta
    meta = dict(source=os.path.abspath(src) if local == src else src, config=config,
                backbone_format=report.backbone.source_format, dropped=report.backbone.dropped)
    if isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes):
        report.classes = tuple(classes)
        meta['dataset_meta'] = dict(classes=report.classes)
    save_atomically({'state_dict': converted, 'meta': meta}, dst)
    return report
