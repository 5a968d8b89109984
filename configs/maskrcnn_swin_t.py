# Mask R-CNN Swin-T COCO 1x; source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_1x_coco.py
# AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05 except norms / relative_position_bias_table /
# absolute_pos_embed; drop path 0.1; multi-scale 480-800 + random crop; 16 images per iteration (8 GPUs x 2).
# Pretrained: the official ImageNet-1K file (SwinTransformer/storage v1.0.0), downloaded once into the
# torch hub cache and converted on load by vt_backbones (offline: see tools/download_weights.py).
# Precision: fp16 mixed precision, as the official config (apex O1 with dynamic loss scaling: runner
# EpochBasedRunnerAmp, DistOptimizerHook use_fp16=True): mmengine's AmpOptimWrapper, fp16 autocast with a
# dynamic loss scale on GPUs; without CUDA, bf16 where the CPU has it natively, else fp32
# (vt_backbones/engine/optim_wrappers.py).
_base_ = [
    './_base_/models/mask_rcnn_fpn.py',
    './_base_/datasets/coco_instance_ms_crop.py',
    './_base_/schedules/schedule_1x.py',
    './_base_/default_runtime_det.py',
]

model = dict(
    backbone=dict(
        type='vt_backbones.SwinTransformer',
        arch='tiny',
        window_size=7,
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
            'norm': dict(decay_mult=0.0),
        }))
