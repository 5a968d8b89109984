# Mask R-CNN Swin-S COCO 1x; source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/mask_rcnn_swin_small_patch4_window7_mstrain_480-800_adamw_3x_coco.py (on the 1x schedule)
# The official repo has no Swin-S 1x Mask R-CNN config; optimizer, augmentation and batch as the Swin-T 1x config.
# Pretrained: the official ImageNet-1K file.
# Precision: fp16 AMP with dynamic loss scaling, inherited (the official Swin detection configs' apex O1).
_base_ = './maskrcnn_swin_t.py'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_small_patch4_window7_224.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
