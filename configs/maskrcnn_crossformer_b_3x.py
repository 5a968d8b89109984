# Mask R-CNN CrossFormer-B COCO 3x; no official 3x config was released: as maskrcnn_crossformer_s_3x.py (the official 1x optimizer on Swin's 3x data and schedule)
# With the B backbone, drop path 0.3 (the official B backbone wrapper) and crossformer-b.pth.
# Precision: fp32, as the official configs (optimizer_config without fp16; no AMP in the dense code).
_base_ = './maskrcnn_crossformer_s_3x.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/crossformer-b.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
