# Mask R-CNN Focal-T COCO 1x with Swin-T's recipe; source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_1x_coco.py
# Focal's detection code and configs were never released (microsoft/Focal-Transformer has classification code only),
# so this is Swin-T's recipe: AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05 except norms and the position-bias
# tables (the official no_weight_decay_keywords: relative_position_bias_table{,_to_neighbors,_to_windows}); drop path
# 0.1 as Swin-T 1x; multi-scale 480-800 + random crop; 16 images per iteration (8 GPUs x 2).
# Pretrained: the official ImageNet-1K focal-tiny-is224-ws7.pth, converted on load by vt_backbones.
_base_ = [
    './_base_/models/mask_rcnn_fpn.py',
    './_base_/datasets/coco_instance_ms_crop.py',
    './_base_/schedules/schedule_1x.py',
    './_base_/default_runtime_det.py',
]

model = dict(
    backbone=dict(
        type='vt_backbones.FocalTransformer',
        arch='tiny',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/focal-tiny-is224-ws7.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'relative_position_bias_table': dict(decay_mult=0.0),  # also matches the _to_neighbors/_to_windows tables
            'norm': dict(decay_mult=0.0),
        }))
