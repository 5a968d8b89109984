# Mask R-CNN Twins-PCPVT-S COCO 3x, the official "Swin setting"; source: Meituan-AutoML/Twins detection/configs/mask_rcnn_pcpvt_s_fpn_3x_coco_swin_setting.py
# Multi-scale 480-800 with random crop (Swin's augmentation); AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05
# except the PEGs (pos_block) and norms; 36 epochs (steps 27, 33); 16 images per iteration (8 GPUs x 2); drop path
# 0.2 (the official backbone's fixed value). Warm-up: 500 iterations, as the official.
# Precision: fp16, as the official Swin-setting config (mmdet 2.x fp16 = dict(loss_scale=512.), a static loss
# scale): mmengine's AmpOptimWrapper with loss_scale=512.0 on GPUs; without CUDA, bf16 where the CPU has it
# natively, else fp32 (vt_backbones/engine/optim_wrappers.py).
_base_ = [
    './_base_/models/mask_rcnn_fpn.py',
    './_base_/datasets/coco_instance_ms_crop.py',
    './_base_/schedules/schedule_3x.py',
    './_base_/default_runtime_det.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='vt_backbones.PCPVT',
        arch='small',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/twins_pcpvt_small.in1k')),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale=512.0,  # static, as the official
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'pos_block': dict(decay_mult=0.0), 'norm': dict(decay_mult=0.0)}))
