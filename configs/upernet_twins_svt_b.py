# UperNet Twins-SVT-B ADE20K 512x512 160k; source: the official UperNet config, Meituan-AutoML/Twins segmentation/configs/upernet_*_512x512_160k_ade20k_swin_setting.py (values as ported to mmseg 1.x configs/twins/twins_svt-b_uperhead_8xb2-160k_ade20k-512x512.py)
# As the PCPVT-S config (same optimizer, schedule, batch, drop path 0.2) with the SVT-B backbone (alt_gvt_base) and alt_gvt_base.pth.
# Precision: fp32, as the official UperNet configs (no fp16 in their runtime or optimizer config).
_base_ = './upernet_twins_pcpvt_s.py'

model = dict(
    backbone=dict(
        type='vt_backbones.SVT',
        arch='base',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/twins_svt_base.in1k')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
