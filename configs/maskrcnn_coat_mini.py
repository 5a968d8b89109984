# Mask R-CNN CoaT Mini COCO 1x; source: mlpc-ucsd/CoaT tasks/mmdet/configs/coat/mask_rcnn_coat_mini_mstrain_480-800_adamw_1x_coco.py
# Multi-scale 480-800 with random crop (Swin's augmentation, in the official 1x and 3x configs alike); AdamW lr 1e-4,
# betas (0.9, 0.999), weight decay 0.05 on every parameter (the official configs set paramwise_cfg=None: CoaT's shared
# modules made mmdet 2.x's parameter groups fail; ours hold each shared parameter once, so exclusions would work);
# drop path 0.0 (the official value); 12 epochs (steps 8, 11); 16 images per iteration (8 GPUs x 2).
# Pretrained: the official ImageNet-1K file coat_mini_40667eec.pth, converted on load.
# Precision: fp16 AMP with dynamic loss scaling, inherited (the official CoaT detection configs' apex O1).
_base_ = './maskrcnn_coat_lite_mini.py'

model = dict(
    backbone=dict(
        arch='mini',
        init_cfg=dict(type='Pretrained', checkpoint='https://vcl.ucsd.edu/coat/pretrained/coat_mini_40667eec.pth')),
    neck=dict(in_channels=[152, 216, 216, 216]))
