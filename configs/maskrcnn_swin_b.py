# Mask R-CNN Swin-B COCO 1x; source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/cascade_mask_rcnn_swin_base_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py (backbone) + mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_1x_coco.py
# The official repo has no Swin-B Mask R-CNN config; its Swin-B detector (Cascade Mask R-CNN) uses drop path 0.3
# and the ImageNet-1K swin_base_patch4_window7_224.pth, the same optimizer, augmentation and batch as here.
# Precision: fp16 AMP with dynamic loss scaling, inherited (the official Swin detection configs' apex O1).
_base_ = './maskrcnn_swin_t.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_base_patch4_window7_224.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
