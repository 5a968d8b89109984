# UperNet Swin-T ADE20K 512x512 160k; source: SwinTransformer/Swin-Transformer-Semantic-Segmentation configs/swin/upernet_swin_tiny_patch4_window7_512x512_160k_ade20k.py
# AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 except norms / relative_position_bias_table /
# absolute_pos_embed; poly (power 1.0, min lr 0) after a 1500-iteration linear warm-up from 1e-6; drop path 0.3;
# 16 images per iteration (8 GPUs x 2). Pretrained: the official ImageNet-1K file, converted on load.
# Precision: fp32, as the official config (optimizer_config=dict(): the Swin segmentation code has no fp16 or
# apex, unlike Swin's detection code).
_base_ = [
    './_base_/models/upernet.py',
    './_base_/datasets/ade20k.py',
    './_base_/schedules/schedule_160k.py',
    './_base_/default_runtime_seg.py',
]

model = dict(
    backbone=dict(
        type='vt_backbones.SwinTransformer',
        arch='tiny',
        window_size=7,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
            'norm': dict(decay_mult=0.0),
        }))
