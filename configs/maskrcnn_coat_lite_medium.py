# Mask R-CNN CoaT-Lite Medium COCO 1x; no official detection config for CoaT-Lite Medium: the recipe of the official CoaT configs, mlpc-ucsd/CoaT tasks/mmdet/configs/coat/mask_rcnn_coat_*_mstrain_480-800_adamw_1x_coco.py
# Multi-scale 480-800 with random crop (Swin's augmentation, in the official 1x and 3x configs alike); AdamW lr 1e-4,
# betas (0.9, 0.999), weight decay 0.05 on every parameter (the official configs set paramwise_cfg=None: CoaT's shared
# modules made mmdet 2.x's parameter groups fail; ours hold each shared parameter once, so exclusions would work);
# drop path 0.2 (our choice: 0.2 as the official config of the largest CoaT, CoaT Small); 12 epochs (steps 8, 11); 16 images per iteration (8 GPUs x 2).
# Pretrained: the official ImageNet-1K file coat_lite_medium_a750cd63.pth, converted on load.
# Precision: fp16 AMP with dynamic loss scaling, inherited (the official CoaT detection configs' apex O1).
_base_ = './maskrcnn_coat_lite_mini.py'

model = dict(
    backbone=dict(
        arch='lite_medium',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='https://vcl.ucsd.edu/coat/pretrained/coat_lite_medium_a750cd63.pth')),
    neck=dict(in_channels=[128, 256, 320, 512]))
