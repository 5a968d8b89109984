# Mask R-CNN Focal-T COCO 1x with Swin-T's recipe; source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_1x_coco.py
# Focal's detection code and configs were never released (microsoft/Focal-Transformer has classification code only),
# so this is Swin-T's recipe: AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05 except norms and the position-bias
# tables (the official no_weight_decay_keywords: relative_position_bias_table{,_to_neighbors,_to_windows}); drop path
# 0.1 as Swin-T 1x; multi-scale 480-800 + random crop; 16 images per iteration (8 GPUs x 2).
# Pretrained: the official ImageNet-1K focal-tiny-is224-ws7.pth, converted on load by vt_backbones.
# Precision: fp16 AMP with dynamic loss scaling, inherited from Swin's recipe (the official Swin detection
# configs train with apex O1); the Focal authors published no detection recipe of their own.
_base_ = './maskrcnn_swin_t.py'  # Swin-T's recipe: optimizer (no decay on norms and bias tables), data, schedule

model = dict(
    backbone=dict(
        _delete_=True,
        type='vt_backbones.FocalTransformer',
        arch='tiny',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='https://projects4jw.blob.core.windows.net/model/focal-transformer/imagenet1k/focal-tiny-is224-ws7.pth')))
# Swin's 'relative_position_bias_table' key also matches Focal's _to_neighbors/_to_windows tables.
