# UperNet Shuffle-S ADE20K 512x512 160k with Swin's recipe (no official Shuffle segmentation configs); source: SwinTransformer/Swin-Transformer-Semantic-Segmentation configs/swin/upernet_swin_small_patch4_window7_512x512_160k_ade20k.py
# As upernet_shuffle_t.py (same optimizer, schedule, drop path 0.3, SyncBN) with the Shuffle-S backbone and its converted ImageNet-1K file.
# Precision: fp32, as Swin's UperNet recipe it uses (the official Swin segmentation configs train in fp32).
_base_ = './upernet_shuffle_t.py'

model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/shuffle_s_vtb.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
