# Mask R-CNN Focal-S COCO 1x with Swin-S's recipe; source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/mask_rcnn_swin_small_patch4_window7_mstrain_480-800_adamw_3x_coco.py (on the 1x schedule, as our Swin-S 1x)
# Focal's detection configs were never released: the Focal-T 1x config (Swin-T's optimizer, augmentation, batch)
# with drop path 0.2 as Swin-S and the official ImageNet-1K focal-small-is224-ws7.pth.
# Precision: fp16 AMP with dynamic loss scaling, inherited from Swin's recipe (the official Swin detection
# configs train with apex O1); the Focal authors published no detection recipe of their own.
_base_ = './maskrcnn_focal_t.py'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='https://projects4jw.blob.core.windows.net/model/focal-transformer/imagenet1k/focal-small-is224-ws7.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
