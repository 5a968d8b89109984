# Mask R-CNN GG-T COCO 1x: Swin-T's recipe (./maskrcnn_swin_t.py, from SwinTransformer/Swin-Transformer-Object-Detection), since the GG paper (arXiv 2106.02277) follows Swin's detection settings and no GG config was ever published.
# AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05 except norms / relative_position_bias_table (GG has
# these tables only with glance_pos_bias=True); drop path 0.1;
# multi-scale 480-800 + random crop; 16 images per iteration (8 GPUs x 2).
# No official GG-Transformer code or weights exist (vt_backbones re-implements it from the paper), so there is no
# ImageNet checkpoint to download: checkpoints/gg_t_in1k.pth must be your own ImageNet-1K GG-T in vt_backbones' layout
# (e.g. an mmpretrain classifier around this backbone). Training stops with "checkpoint file not found" without it
# rather than silently train from scratch; set init_cfg=None to train from scratch on purpose.
# Precision: fp16 AMP with dynamic loss scaling, inherited from Swin's recipe (the official Swin detection
# configs train with apex O1); the GG authors published no detection recipe of their own.
_base_ = './maskrcnn_swin_t.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='vt_backbones.GGTransformer',
        arch='tiny',
        window_size=7,
        gaze_kernel_size=3,
        glance_pos_bias=False,  # as the paper: no position encoding (True adds Swin's bias, our addition)
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/gg_t_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
