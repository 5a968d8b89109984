# UperNet CrossFormer-L ADE20K 512x512 160k; source: cheerss/CrossFormer segmentation/configs/upernet_crossformer_l_ade20k.py (+ segmentation/crossformer_factory.py CrossFormer_L)
# As the CrossFormer-S config (same data, optimizer, schedule) with the L backbone, drop path 0.5 and crossformer-l.pth.
# Precision: fp32, as the official configs (optimizer_config without fp16; no AMP in the dense code).
_base_ = './upernet_crossformer_s.py'

model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/crossformer-l.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
