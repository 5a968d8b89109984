# UperNet Swin-L ADE20K 512x512 160k; source: SwinTransformer/Swin-Transformer-Semantic-Segmentation configs/swin/upernet_swin_base_patch4_window7_512x512_160k_ade20k.py (no official Swin-L config) as mmseg's configs/swin/swin-large-patch4-window7-in22k-pre_upernet_8xb2-160k_ade20k-512x512.py
# As the Swin-T config (same optimizer, schedule, drop path 0.3) with the Swin-L backbone; Swin-L exists only as
# ImageNet-22K pre-training, so it starts from the official swin_large_patch4_window7_224_22k.pth.
# Precision: fp32, inherited (the official Swin UperNet configs train in fp32).
_base_ = './upernet_swin_t.py'

model = dict(
    backbone=dict(
        arch='large',
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_large_patch4_window7_224_22k.pth')),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))
