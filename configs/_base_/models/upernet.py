# UperNet + FCN auxiliary head on stage 3 (mmseg 1.x), heads as mmseg's configs/_base_/models/upernet_swin.py.
# SyncBN in the heads as mmseg trains them on 8 GPUs (on a machine without CUDA, vt_backbones.compat maps SyncBN
# to BN). The backbone is a placeholder: a leaf config sets the variant, decode_head.in_channels (all four stages)
# and auxiliary_head.in_channels (stage 3). Another family replaces it with backbone=dict(_delete_=True, ...).
custom_imports = dict(imports=['vt_backbones'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=(512, 512)),  # the training crop of datasets/ade20k.py; batches are padded to it
    pretrained=None,
    backbone=dict(
        type='vt_backbones.SwinTransformer',
        arch='tiny',
        out_indices=(0, 1, 2, 3)),
    decode_head=dict(
        type='UPerHead',
        in_channels=[96, 192, 384, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=384,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
