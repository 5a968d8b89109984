# UperNet Shuffle-T ADE20K 512x512 160k with Swin's recipe (the Shuffle Transformer authors released no segmentation configs); source: SwinTransformer/Swin-Transformer-Semantic-Segmentation configs/swin/upernet_swin_tiny_patch4_window7_512x512_160k_ade20k.py
# AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 except the norms (block, patch-merging and stem BatchNorms) and
# the relative position bias tables; poly (power 1.0, min lr 0) after a 1500-iteration linear warm-up from 1e-6;
# drop path 0.3; SyncBN backbone norms; 16 images per iteration (8 GPUs x 2).
# Pretrained: the official ImageNet-1K Shuffle-T file, converted (tools/convert_weights.py) to checkpoints/shuffle_t_vtb.pth.
# Precision: fp32, as Swin's UperNet recipe it uses (the official Swin segmentation configs train in fp32).
_base_ = './upernet_swin_t.py'  # Swin-T's recipe: optimizer, data, 160k schedule

model = dict(
    backbone=dict(
        _delete_=True,
        type='vt_backbones.ShuffleTransformer',
        arch='tiny',
        window_size=7,
        drop_path_rate=0.3,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/shuffle_t_vtb.pth')))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'to_token.conv1.1': dict(decay_mult=0.0),  # the stem's BatchNorms (official names)
            'to_token.conv2.1': dict(decay_mult=0.0),
        }))
