# UperNet CoaT-Lite Mini ADE20K 512x512 160k; CoaT published no ADE20K results: Swin's recipe, SwinTransformer/Swin-Transformer-Semantic-Segmentation configs/swin/upernet_swin_tiny_patch4_window7_512x512_160k_ade20k.py
# AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 except norms and the position encodings (Swin excludes its
# norms and position tables; CoaT's counterparts: class tokens, CPE, CRPE); poly (power 1.0, min lr 0) after a
# 1500-iteration linear warm-up from 1e-6; 16 images per iteration (8 GPUs x 2). Drop path 0.0: this variant's
# detection value (Swin's 0.3 is tuned for Swin-T). Pretrained: the official ImageNet-1K file coat_lite_mini_6b4a8ae5.pth, converted on load.
# Precision: fp32, as Swin's UperNet recipe it uses (the official Swin segmentation configs train in fp32).
_base_ = './upernet_swin_t.py'  # Swin-T's recipe: optimizer, data, 160k schedule

model = dict(
    backbone=dict(
        _delete_=True,
        type='vt_backbones.CoaT',
        arch='lite_mini',
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='https://vcl.ucsd.edu/coat/pretrained/coat_lite_mini_6b4a8ae5.pth')),
    decode_head=dict(in_channels=[64, 128, 320, 512], num_classes=150),
    auxiliary_head=dict(in_channels=320, num_classes=150))

# Swin's no-decay keys (its 'norm' also matches CoaT's norms) plus CoaT's class tokens and position encodings.
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'cls_token': dict(decay_mult=0.0),
            'cpe': dict(decay_mult=0.0),
            'crpe': dict(decay_mult=0.0),
        }))
