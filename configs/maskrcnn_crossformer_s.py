# Mask R-CNN CrossFormer-S COCO 1x; source: cheerss/CrossFormer detection/configs/mask_rcnn_crossformer_s_fpn_1x_coco.py (+ detection/crossformer_factory.py CrossFormer_S)
# Single scale 1333x800 + flip; AdamW lr 1e-4, betas (0.9, 0.999), weight decay 1e-4 on every parameter; 12 epochs
# (steps 8, 11) with a 500-iteration linear warm-up; 16 images per iteration (8 GPUs x 2); drop path 0.2 (set by the
# official backbone wrapper); group size 7, LDA intervals 8/4/2/1 with fixed intervals (the official dense code).
# Pretrained: the official ImageNet-1K file crossformer-s.pth (cheerss/CrossFormer README), converted on load.
# Precision: fp32, as the official configs (optimizer_config without fp16; no AMP in the dense code).
_base_ = [
    './_base_/models/mask_rcnn_fpn.py',
    './_base_/datasets/coco_instance.py',
    './_base_/schedules/schedule_1x.py',
    './_base_/default_runtime_det.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='vt_backbones.CrossFormer',
        arch='small',
        group_size=7,
        intervals=(8, 4, 2, 1),
        lda_mode='fixed_interval',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/crossformer-s.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4))
