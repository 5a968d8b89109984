from setuptools import find_packages, setup

setup(
    name='vt_backbones',
    version='0.1.0',
    description='Vision-transformer backbones (Swin, Twins, Shuffle, CoaT, CrossFormer, GG, Focal) for mmdet 3.x and mmseg 1.x',
    packages=find_packages(include=['vt_backbones', 'vt_backbones.*']),
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.1',
        'mmcv>=2.0.0rc4,<2.2.0',
        'mmengine==0.10.7',
        'mmdet==3.3.0',
        'mmsegmentation==1.2.2',
        'pycocotools>=2.0.8',
        'ftfy',
        'regex',
        'einops',
        'safetensors',  # timm's hub files (the Twins configs' pretrained weights), vt_backbones/weights.py
    ],
    extras_require={
        'test': ['pytest', 'psutil'],
        'benchmark': ['timm', 'fvcore', 'psutil'],
        # hf-hub: references through the hub client (its cache, tokens, offline mode); without it they are
        # fetched from the hub's public URLs (vt_backbones/weights.py).
        'hub': ['huggingface_hub'],
        # ONNX export (vt_backbones.export, tools/export_onnx.py): torch's dynamo exporter writes through onnxscript.
        'deploy': ['onnx>=1.17', 'onnxscript>=0.5', 'onnxruntime>=1.20'],
    },
)
