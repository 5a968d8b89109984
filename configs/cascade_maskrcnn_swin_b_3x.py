# Cascade Mask R-CNN Swin-B COCO 3x; source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/cascade_mask_rcnn_swin_base_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py
# For the released v1.0.2 cascade_mask_rcnn_swin_base_patch4_window7.pth: Swin-T 3x's settings with Swin-B (drop path 0.3).
# Precision: fp16 mixed precision, as the official config (apex O1, dynamic loss scale), inherited from Mask R-CNN Swin-T.
_base_ = './cascade_maskrcnn_swin_t_3x.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_base_patch4_window7_224.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
