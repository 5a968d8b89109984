# Mask R-CNN CrossFormer-L COCO 3x; no official CrossFormer-L detection config exists: CrossFormer-S's 3x recipe (maskrcnn_crossformer_s_3x.py)
# Everything as maskrcnn_crossformer_s_3x.py (drop path 0.2) with the L backbone and crossformer-l.pth.
# Precision: fp32, as the official configs (optimizer_config without fp16; no AMP in the dense code).
_base_ = './maskrcnn_crossformer_s_3x.py'

model = dict(
    backbone=dict(
        arch='large',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/crossformer-l.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
