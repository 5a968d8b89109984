# UperNet GG-S ADE20K 512x512 160k: Swin-S's recipe (./upernet_swin_s.py, from SwinTransformer/Swin-Transformer-Semantic-Segmentation), as the GG paper (arXiv 2106.02277) follows Swin's segmentation settings.
# As the GG-T config (same optimizer, schedule, drop path 0.3) with the GG-S backbone; checkpoints/gg_s_in1k.pth must be
# your own ImageNet-1K GG-S (no official weights exist, see maskrcnn_gg_t.py).
# Precision: fp32, as Swin's UperNet recipe it uses (the official Swin segmentation configs train in fp32).
_base_ = './upernet_gg_t.py'

model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/gg_s_in1k.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
