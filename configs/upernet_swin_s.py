# UperNet Swin-S ADE20K 512x512 160k; source: SwinTransformer/Swin-Transformer-Semantic-Segmentation configs/swin/upernet_swin_small_patch4_window7_512x512_160k_ade20k.py
# As the Swin-T config (same optimizer, schedule, drop path 0.3) with the Swin-S backbone and its ImageNet-1K file.
# Precision: fp32, inherited (the official Swin UperNet configs train in fp32).
_base_ = './upernet_swin_t.py'

model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_small_patch4_window7_224.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
