# UperNet Focal-B ADE20K 512x512 160k with Swin-B's recipe; source: SwinTransformer/Swin-Transformer-Semantic-Segmentation configs/swin/upernet_swin_base_patch4_window7_512x512_160k_ade20k.py
# Focal's segmentation configs were never released: as the Focal-T config (Swin's optimizer, schedule, drop path 0.3
# as Swin-B) with the Focal-B backbone and the official ImageNet-1K focal-base-is224-ws7.pth.
# Precision: fp32, as Swin's UperNet recipe it uses (the official Swin segmentation configs train in fp32).
_base_ = './upernet_focal_t.py'

model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(type='Pretrained', checkpoint='https://projects4jw.blob.core.windows.net/model/focal-transformer/imagenet1k/focal-base-is224-ws7.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
