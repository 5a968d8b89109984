# Mask R-CNN Shuffle-S COCO 1x with Swin's recipe (no official Shuffle detection configs); source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/mask_rcnn_swin_small_patch4_window7_mstrain_480-800_adamw_3x_coco.py (on the 1x schedule, as our maskrcnn_swin_s.py)
# As maskrcnn_shuffle_t.py (optimizer, augmentation, batch, SyncBN) with the Shuffle-S backbone, Swin-S's drop path 0.2
# and the converted official ImageNet-1K Shuffle-S file.
# Precision: fp16 AMP with dynamic loss scaling, inherited from Swin's recipe (the official Swin detection
# configs train with apex O1); the Shuffle authors published no detection recipe of their own.
_base_ = './maskrcnn_shuffle_t.py'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/shuffle_s_vtb.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
