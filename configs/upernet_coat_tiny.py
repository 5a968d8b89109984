# UperNet CoaT Tiny ADE20K 512x512 160k; CoaT published no ADE20K results: Swin's recipe, SwinTransformer/Swin-Transformer-Semantic-Segmentation configs/swin/upernet_swin_tiny_patch4_window7_512x512_160k_ade20k.py
# AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 except norms and the position encodings (Swin excludes its
# norms and position tables; CoaT's counterparts: class tokens, CPE, CRPE); poly (power 1.0, min lr 0) after a
# 1500-iteration linear warm-up from 1e-6; 16 images per iteration (8 GPUs x 2). Drop path 0.0: this variant's
# detection value (Swin's 0.3 is tuned for Swin-T). Pretrained: the official ImageNet-1K file coat_tiny_c6efc33c.pth, converted on load.
# Precision: fp32, as Swin's UperNet recipe it uses (the official Swin segmentation configs train in fp32).
_base_ = './upernet_coat_lite_mini.py'

model = dict(
    backbone=dict(
        arch='tiny',
        init_cfg=dict(type='Pretrained', checkpoint='https://vcl.ucsd.edu/coat/pretrained/coat_tiny_c6efc33c.pth')),
    decode_head=dict(in_channels=[152, 152, 152, 152]),
    auxiliary_head=dict(in_channels=152))
