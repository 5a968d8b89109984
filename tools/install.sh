#!/usr/bin/env bash
# Idempotent install of vt_backbones and the OpenMMLab stack into a Python environment.
#
#   VENV=.venv (default)   create/use this virtual env
#   PYTHON=/path/python    install into that interpreter's environment instead (e.g. a CUDA torch env)
#   MMCV_CACHE=DIR         where built mmcv wheels are cached (default ~/.cache/vt_backbones/wheels)
#
# mmcv 2.1.0 ships only as source on PyPI; it is compiled once with its ops and cached per
# (mmcv, torch, python, cuda) so later installs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

MMCV_VERSION=2.1.0
TORCH_DEFAULT=2.13.0
MMCV_CACHE=${MMCV_CACHE:-$HOME/.cache/vt_backbones/wheels}
STAMP_INPUTS="tools/install.sh setup.py"

if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
  STAMP_DIR=$($PY -c 'import sys; print(sys.prefix)')
else
  VENV=${VENV:-.venv}
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[install] creating $VENV"
    python3 -m venv "$VENV"
  fi
  PY=$VENV/bin/python
  STAMP_DIR=$VENV
fi
STAMP=$STAMP_DIR/.vt_backbones_installed
want_stamp=$(cat $STAMP_INPUTS | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] && \
   $PY -c 'import vt_backbones, mmdet, mmseg; from mmcv.ops import nms, RoIAlign' 2>/dev/null; then
  exit 0
fi

pipi() { $PY -m pip install --disable-pip-version-check -q "$@"; }
start=$(date +%s)

# 1. torch: keep one that is already installed (a CUDA build, say), else the CPU default.
if ! $PY -c 'import torch' 2>/dev/null; then
  echo "[install] torch==$TORCH_DEFAULT"
  pipi "torch==$TORCH_DEFAULT"
fi
pipi 'setuptools>=77.0.3,<82' wheel ninja psutil numpy

# 2. mmcv with ops, from a cached wheel or built once.
if ! $PY -c 'from mmcv.ops import nms, RoIAlign; import mmcv; assert mmcv.__version__ == "'$MMCV_VERSION'"' 2>/dev/null; then
  key=$($PY -c 'import sys, torch; cuda = torch.version.cuda or "none"; print(f"torch{torch.__version__}-py{sys.version_info.major}{sys.version_info.minor}-cuda{cuda}".replace("+", "_"))')
  wheel_dir=$MMCV_CACHE/mmcv-$MMCV_VERSION-$key
  if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
    echo "[install] building mmcv $MMCV_VERSION with ops for $key (about 11 min on 2 cores, once)"
    tmp=$(mktemp -d)
    $PY -m pip download --disable-pip-version-check -q --no-deps --no-binary mmcv -d "$tmp" "mmcv==$MMCV_VERSION"
    # Build isolation would compile against a different torch and silently drop mmcv._ext.
    cuda_flag=$($PY -c 'import torch; print(1 if torch.cuda.is_available() or torch.version.cuda else 0)')
    MMCV_WITH_OPS=1 FORCE_CUDA=$cuda_flag MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      $PY -m pip wheel --disable-pip-version-check --no-build-isolation --no-deps -w "$tmp/wheel" "$tmp"/mmcv-*.tar.gz
    mkdir -p "$MMCV_CACHE"
    rm -rf "$wheel_dir.partial" && mkdir -p "$wheel_dir.partial"
    cp "$tmp"/wheel/mmcv-*.whl "$wheel_dir.partial/"
    rm -rf "$wheel_dir" && mv "$wheel_dir.partial" "$wheel_dir"   # publish the cache entry whole
    rm -rf "$tmp"
  fi
  echo "[install] mmcv from $wheel_dir"
  pipi --no-deps --force-reinstall "$wheel_dir"/mmcv-*.whl
  pipi addict opencv-python packaging Pillow pyyaml yapf 'mmengine==0.10.7'  # mmcv's own dependencies
fi

# 3. The rest of the stack and the package itself.
pipi 'mmengine==0.10.7' 'mmdet==3.3.0' 'mmsegmentation==1.2.2' 'pycocotools>=2.0.8' ftfy regex einops safetensors pytest pytest-xdist pytest-timeout
pipi --no-build-isolation -e '.[deploy,hub]'  # onnx, onnxscript, onnxruntime and huggingface_hub: their tests run

if ! $PY -c 'from mmcv.ops import nms, RoIAlign' 2>/dev/null; then
  echo "[install] ERROR: mmcv is installed without its compiled ops (mmcv._ext)." >&2
  echo "          Fix: remove $MMCV_CACHE and rerun; the build needs MMCV_WITH_OPS=1 and --no-build-isolation." >&2
  exit 1
fi
$PY -c 'import vt_backbones, mmdet, mmseg' 
echo "$want_stamp" > "$STAMP"
echo "[install] done in $(( $(date +%s) - start )) s"
