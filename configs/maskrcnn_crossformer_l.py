# Mask R-CNN CrossFormer-L COCO 1x; no official CrossFormer-L detection config exists: CrossFormer-S's recipe (cheerss/CrossFormer detection/configs/mask_rcnn_crossformer_s_fpn_1x_coco.py)
# Everything as maskrcnn_crossformer_s.py (data, AdamW 1e-4 / weight decay 1e-4, schedule, drop path 0.2) with the L
# backbone and the ImageNet-1K file crossformer-l.pth (listed as "TBD" in the official README).
# Precision: fp32, as the official configs (optimizer_config without fp16; no AMP in the dense code).
_base_ = './maskrcnn_crossformer_s.py'

model = dict(
    backbone=dict(
        arch='large',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/crossformer-l.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
