# UperNet CrossFormer-B ADE20K 512x512 160k; source: cheerss/CrossFormer segmentation/configs/upernet_crossformer_b_ade20k.py (+ segmentation/crossformer_factory.py CrossFormer_B)
# As the CrossFormer-S config (same data, optimizer, schedule) with the B backbone, drop path 0.3 and crossformer-b.pth.
# Precision: fp32, as the official configs (optimizer_config without fp16; no AMP in the dense code).
_base_ = './upernet_crossformer_s.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/crossformer-b.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
