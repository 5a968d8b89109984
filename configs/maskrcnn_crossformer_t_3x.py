# Mask R-CNN CrossFormer-T COCO 3x; no official CrossFormer-T detection config exists: CrossFormer-S's 3x recipe (maskrcnn_crossformer_s_3x.py)
# Everything as maskrcnn_crossformer_s_3x.py (drop path 0.2) with the T backbone and crossformer-t.pth.
# Precision: fp32, as the official configs (optimizer_config without fp16; no AMP in the dense code).
_base_ = './maskrcnn_crossformer_s_3x.py'

model = dict(
    backbone=dict(
        arch='tiny',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/crossformer-t.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
