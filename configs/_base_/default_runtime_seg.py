# mmseg 1.x runtime (configs/_base_/default_runtime.py + the hooks of schedules/schedule_160k.py): iteration-based
# hooks, a checkpoint every 16k iterations, local visualisation only.
# auto_scale_lr: the recipes' learning rates are for 16 images per iteration (8 GPUs x 2); mmengine's Runner
# scales lr linearly to another total batch only when enable=True.
default_scope = 'mmseg'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=16000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)

log_level = 'INFO'
load_from = None
resume = False

auto_scale_lr = dict(enable=False, base_batch_size=16)
