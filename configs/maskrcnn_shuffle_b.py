# Mask R-CNN Shuffle-B COCO 1x with Swin's recipe (no official Shuffle detection configs); source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/cascade_mask_rcnn_swin_base_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py (backbone drop path) + mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_1x_coco.py
# As maskrcnn_shuffle_t.py (optimizer, augmentation, batch, SyncBN) with the Shuffle-B backbone, Swin-B's drop path 0.3
# and the converted official ImageNet-1K Shuffle-B file.
# Precision: fp16 AMP with dynamic loss scaling, inherited from Swin's recipe (the official Swin detection
# configs train with apex O1); the Shuffle authors published no detection recipe of their own.
_base_ = './maskrcnn_shuffle_t.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/shuffle_b_vtb.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
