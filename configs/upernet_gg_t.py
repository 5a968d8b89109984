# UperNet GG-T ADE20K 512x512 160k: Swin-T's recipe (./upernet_swin_t.py, from SwinTransformer/Swin-Transformer-Semantic-Segmentation), since the GG paper (arXiv 2106.02277) follows Swin's segmentation settings and no GG config was ever published.
# AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 except norms / relative_position_bias_table (GG has
# these tables only with glance_pos_bias=True); poly after a
# 1500-iteration linear warm-up; drop path 0.3; 16 images per iteration (8 GPUs x 2).
# No official GG-Transformer code or weights exist: checkpoints/gg_t_in1k.pth must be your own ImageNet-1K GG-T in
# vt_backbones' layout (see maskrcnn_gg_t.py); set init_cfg=None to train from scratch on purpose.
# Precision: fp32, as Swin's UperNet recipe it uses (the official Swin segmentation configs train in fp32).
_base_ = './upernet_swin_t.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='vt_backbones.GGTransformer',
        arch='tiny',
        window_size=7,
        gaze_kernel_size=3,
        glance_pos_bias=False,  # as the paper: no position encoding (True adds Swin's bias, our addition)
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/gg_t_in1k.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))
