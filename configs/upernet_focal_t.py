# UperNet Focal-T ADE20K 512x512 160k with Swin-T's recipe; source: SwinTransformer/Swin-Transformer-Semantic-Segmentation configs/swin/upernet_swin_tiny_patch4_window7_512x512_160k_ade20k.py
# Focal's segmentation code and configs were never released (microsoft/Focal-Transformer has classification code
# only), so this is Swin-T's recipe: AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 except norms and the
# position-bias tables; poly (power 1.0, min lr 0) after a 1500-iteration linear warm-up from 1e-6; drop path 0.3 as
# Swin-T; 16 images per iteration (8 GPUs x 2). Pretrained: the official ImageNet-1K focal-tiny-is224-ws7.pth.
# Precision: fp32, as Swin's UperNet recipe it uses (the official Swin segmentation configs train in fp32).
_base_ = './upernet_swin_t.py'  # Swin-T's recipe: optimizer (no decay on norms and bias tables), data, schedule

model = dict(
    backbone=dict(
        _delete_=True,
        type='vt_backbones.FocalTransformer',
        arch='tiny',
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='https://projects4jw.blob.core.windows.net/model/focal-transformer/imagenet1k/focal-tiny-is224-ws7.pth')))
# Swin's 'relative_position_bias_table' key also matches Focal's _to_neighbors/_to_windows tables.
