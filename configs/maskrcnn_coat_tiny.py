# Mask R-CNN CoaT Tiny COCO 1x; no official detection config for CoaT Tiny: the recipe of the official CoaT configs, mlpc-ucsd/CoaT tasks/mmdet/configs/coat/mask_rcnn_coat_*_mstrain_480-800_adamw_1x_coco.py
# Multi-scale 480-800 with random crop (Swin's augmentation, in the official 1x and 3x configs alike); AdamW lr 1e-4,
# betas (0.9, 0.999), weight decay 0.05 on every parameter (the official configs set paramwise_cfg=None: CoaT's shared
# modules made mmdet 2.x's parameter groups fail; ours hold each shared parameter once, so exclusions would work);
# drop path 0.0 (our choice: 0.0 as the official CoaT-Lite Mini/Small and CoaT Mini configs); 12 epochs (steps 8, 11); 16 images per iteration (8 GPUs x 2).
# The official configs train in fp16 (AMP); here fp32 (use mmengine's AmpOptimWrapper on GPUs to match).
# Pretrained: the official ImageNet-1K file coat_tiny_c6efc33c.pth, converted on load.
_base_ = [
    './_base_/models/mask_rcnn_fpn.py',
    './_base_/datasets/coco_instance_ms_crop.py',
    './_base_/schedules/schedule_1x.py',
    './_base_/default_runtime_det.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='vt_backbones.CoaT',
        arch='tiny',
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/coat_tiny_c6efc33c.pth')),
    neck=dict(in_channels=[152, 152, 152, 152]))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))
