# Mask R-CNN CoaT-Lite Tiny COCO 1x; no official detection config for CoaT-Lite Tiny: the recipe of the official CoaT configs, mlpc-ucsd/CoaT tasks/mmdet/configs/coat/mask_rcnn_coat_*_mstrain_480-800_adamw_1x_coco.py
# Multi-scale 480-800 with random crop (Swin's augmentation, in the official 1x and 3x configs alike); AdamW lr 1e-4,
# betas (0.9, 0.999), weight decay 0.05 on every parameter (the official configs set paramwise_cfg=None: CoaT's shared
# modules made mmdet 2.x's parameter groups fail; ours hold each shared parameter once, so exclusions would work);
# drop path 0.0 (our choice: 0.0 as the official CoaT-Lite Mini/Small and CoaT Mini configs); 12 epochs (steps 8, 11); 16 images per iteration (8 GPUs x 2).
# Pretrained: the official ImageNet-1K file coat_lite_tiny_e88e96b0.pth, converted on load.
# Precision: fp16 AMP with dynamic loss scaling, inherited (the official CoaT detection configs' apex O1).
_base_ = './maskrcnn_coat_lite_mini.py'

model = dict(
    backbone=dict(
        arch='lite_tiny',
        init_cfg=dict(type='Pretrained', checkpoint='https://vcl.ucsd.edu/coat/pretrained/coat_lite_tiny_e88e96b0.pth')),
    neck=dict(in_channels=[64, 128, 256, 320]))
