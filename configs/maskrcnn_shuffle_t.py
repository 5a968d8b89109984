# Mask R-CNN Shuffle-T COCO 1x with Swin's recipe (the Shuffle Transformer authors released no detection configs); source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_1x_coco.py
#
# Launch on one node with 8 GPUs (2 images per GPU = 16 per iteration, the batch the lr is for):
#     tools/dist_train.sh configs/maskrcnn_shuffle_t.py 8
# Another total batch: add --auto-scale-lr (linear scaling from 16 images).
#
# Recipe (as Swin-T's): AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05 except the norms and the relative
# position bias tables; 12 epochs, lr x0.1 after epochs 8 and 11, 500-iteration linear warm-up; multi-scale
# 480-800 training with random crops; drop path 0.1 (Shuffle's schedule: constant within a stage, linear across
# stages, so stage 4 drops with 0.1, stage 3 with 0.067, stage 2 with 0.033, stage 1 never).
#
# Backbone norms: SyncBN, so BatchNorm statistics are taken over all 16 images of an iteration (on a machine without
# CUDA vt_backbones builds plain BN instead). They stay trainable (norm_eval=False) as in Swin's recipe, where the
# norms are trained too.
#
# Pretrained weights: the official ImageNet-1K Shuffle-T file (mulinmeng/Shuffle-Transformer README, Google Drive),
# converted once with
#     python tools/convert_weights.py <downloaded Shuffle-T .pth> checkpoints/shuffle_t_vtb.pth
# (the official file itself can also be named here: it is converted when the model is initialised).
# Precision: fp16 AMP with dynamic loss scaling, inherited from Swin's recipe (the official Swin detection
# configs train with apex O1); the Shuffle authors published no detection recipe of their own.
_base_ = './maskrcnn_swin_t.py'  # Swin-T's recipe: optimizer, multi-scale data, 1x schedule

model = dict(
    backbone=dict(
        _delete_=True,  # replace the base's Swin placeholder entirely
        type='vt_backbones.ShuffleTransformer',
        arch='tiny',  # C = 96, depths 2-2-6-2, heads 3-6-12-24
        window_size=7,
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        out_indices=(0, 1, 2, 3),  # strides 4, 8, 16, 32
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/shuffle_t_vtb.pth')),
    # The FPN reads the four stage outputs: Shuffle-T has 96, 192, 384 and 768 channels.
    neck=dict(in_channels=[96, 192, 384, 768]))

# Swin's no-decay keys ('norm', 'relative_position_bias_table') cover the blocks' norm1/2/3 and the patch-merging
# norms; the stem's two BatchNorms keep the official names to_token.conv{1,2}.1, so they are added here.
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'to_token.conv1.1': dict(decay_mult=0.0),
            'to_token.conv2.1': dict(decay_mult=0.0),
        }))
