# Mask R-CNN CrossFormer-T COCO 1x; no official CrossFormer-T detection config exists: CrossFormer-S's recipe (cheerss/CrossFormer detection/configs/mask_rcnn_crossformer_s_fpn_1x_coco.py)
# Everything as maskrcnn_crossformer_s.py (data, AdamW 1e-4 / weight decay 1e-4, schedule, drop path 0.2) with the T
# backbone and the official ImageNet-1K file crossformer-t.pth.
# Precision: fp32, as the official configs (optimizer_config without fp16; no AMP in the dense code).
_base_ = './maskrcnn_crossformer_s.py'

model = dict(
    backbone=dict(
        arch='tiny',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/crossformer-t.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
