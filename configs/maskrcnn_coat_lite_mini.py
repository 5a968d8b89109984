# Mask R-CNN CoaT-Lite Mini COCO 1x; source: mlpc-ucsd/CoaT tasks/mmdet/configs/coat/mask_rcnn_coat_lite_mini_mstrain_480-800_adamw_1x_coco.py
# Multi-scale 480-800 with random crop (Swin's augmentation, in the official 1x and 3x configs alike); AdamW lr 1e-4,
# betas (0.9, 0.999), weight decay 0.05 on every parameter (the official configs set paramwise_cfg=None: CoaT's shared
# modules made mmdet 2.x's parameter groups fail; ours hold each shared parameter once, so exclusions would work);
# drop path 0.0 (the official value); 12 epochs (steps 8, 11); 16 images per iteration (8 GPUs x 2).
# Pretrained: the official ImageNet-1K file coat_lite_mini_6b4a8ae5.pth, converted on load.
# Precision: fp16 mixed precision, as the official configs (apex O1, dynamic loss scaling; the Swin detection
# codebase): mmengine's AmpOptimWrapper, fp16 autocast with a dynamic loss scale on GPUs; without CUDA, bf16 where
# the CPU has it natively, else fp32 (vt_backbones/engine/optim_wrappers.py).
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
        arch='lite_mini',
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='https://vcl.ucsd.edu/coat/pretrained/coat_lite_mini_6b4a8ae5.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))
