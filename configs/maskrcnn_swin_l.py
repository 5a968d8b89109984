# Mask R-CNN Swin-L COCO 1x; source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_1x_coco.py + Swin-B drop path 0.3 (no official Swin-L config)
# The official repo has no Swin-L detection config; Swin-L exists only as ImageNet-22K pre-training, so the
# backbone starts from the official swin_large_patch4_window7_224_22k.pth.
# Precision: fp16 AMP with dynamic loss scaling, inherited (the official Swin detection configs' apex O1).
_base_ = './maskrcnn_swin_t.py'

model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_large_patch4_window7_224_22k.pth')),
    neck=dict(in_channels=[192, 384, 768, 1536]))
