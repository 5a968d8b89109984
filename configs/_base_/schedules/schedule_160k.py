# 160k iterations: linear warm-up over 1500 iterations from 1e-6 x lr, then poly decay (power 1.0) to 0;
# validation every 16k iterations (Swin-Transformer-Semantic-Segmentation lr_config, in mmseg 1.x form as
# mmseg's configs/swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py).
# No optimizer: every recipe config sets its own optim_wrapper. Checkpoint/log hooks: default_runtime_seg.py.
max_iters = 160000
warmup_iters = 1500
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=warmup_iters, end=max_iters, by_epoch=False),
]
