# UperNet CrossFormer-T ADE20K 512x512 160k; no official CrossFormer-T segmentation config exists: CrossFormer-S's recipe (cheerss/CrossFormer segmentation/configs/upernet_crossformer_s_ade20k.py)
# Everything as upernet_crossformer_s.py (data, AdamW 6e-5 / weight decay 0.01 except norms, schedule, drop path 0.2)
# with the T backbone and the official ImageNet-1K file crossformer-t.pth.
# Precision: fp32, as the official configs (optimizer_config without fp16; no AMP in the dense code).
_base_ = './upernet_crossformer_s.py'

model = dict(
    backbone=dict(
        arch='tiny',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/crossformer-t.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
