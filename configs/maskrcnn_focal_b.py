# Mask R-CNN Focal-B COCO 1x with Swin-B's recipe; source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/cascade_mask_rcnn_swin_base_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py (backbone) + mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_1x_coco.py
# Focal's detection configs were never released: the Focal-T 1x config (Swin-T's optimizer, augmentation, batch)
# with drop path 0.3 as Swin-B and the official ImageNet-1K focal-base-is224-ws7.pth.
# Precision: fp16 AMP with dynamic loss scaling, inherited from Swin's recipe (the official Swin detection
# configs train with apex O1); the Focal authors published no detection recipe of their own.
_base_ = './maskrcnn_focal_t.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='https://projects4jw.blob.core.windows.net/model/focal-transformer/imagenet1k/focal-base-is224-ws7.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
