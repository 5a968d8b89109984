# UperNet Twins-PCPVT-L ADE20K 512x512 160k; source: the official UperNet config, Meituan-AutoML/Twins segmentation/configs/upernet_*_512x512_160k_ade20k_swin_setting.py (values as ported to mmseg 1.x configs/twins/twins_pcpvt-l_uperhead_8xb2-160k_ade20k-512x512.py)
# As the PCPVT-S config (same optimizer, schedule, batch) with the PCPVT-L backbone, pcpvt_large.pth and drop path 0.3.
# Precision: fp32, as the official UperNet configs (no fp16 in their runtime or optimizer config).
_base_ = './upernet_twins_pcpvt_s.py'

model = dict(
    backbone=dict(
        type='vt_backbones.PCPVT',
        arch='large',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/twins_pcpvt_large.in1k')),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
