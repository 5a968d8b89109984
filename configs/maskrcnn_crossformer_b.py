# Mask R-CNN CrossFormer-B COCO 1x; source: cheerss/CrossFormer detection/configs/mask_rcnn_crossformer_b_fpn_1x_coco.py (+ detection/crossformer_factory.py CrossFormer_B)
# As the CrossFormer-S config (same data, optimizer, schedule) with the B backbone, drop path 0.3 and crossformer-b.pth.
# Precision: fp32, as the official configs (optimizer_config without fp16; no AMP in the dense code).
_base_ = './maskrcnn_crossformer_s.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/crossformer-b.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
