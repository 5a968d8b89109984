# UperNet Focal-S ADE20K 512x512 160k with Swin-S's recipe; source: SwinTransformer/Swin-Transformer-Semantic-Segmentation configs/swin/upernet_swin_small_patch4_window7_512x512_160k_ade20k.py
# Focal's segmentation configs were never released: as the Focal-T config (Swin's optimizer, schedule, drop path 0.3
# as Swin-S) with the Focal-S backbone and the official ImageNet-1K focal-small-is224-ws7.pth.
# Precision: fp32, as Swin's UperNet recipe it uses (the official Swin segmentation configs train in fp32).
_base_ = './upernet_focal_t.py'

model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(type='Pretrained', checkpoint='https://projects4jw.blob.core.windows.net/model/focal-transformer/imagenet1k/focal-small-is224-ws7.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
