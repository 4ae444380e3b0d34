#!/bin/bash
# The device check of issue 15 on a lent CUDA machine: `mattebox bench gpu --json`, one command.
#
# Time budget: at most 8 minutes on an H100/H200-class GPU. Planned: precision ~20 s, end to end of the
# fast models at 1920x1080 and 3840x2160 ~90 s, tensor-only ~30 s, 100 training steps x 6 networks
# ~90 s, then the CPU solvers' single HD frames (closed_form, knn, dcnn) ~3 min, last, so a slow CPU
# costs only them: the bench keeps to 450 s (a CPU solver's frame is skipped with under 100 s left) and
# `timeout 470` ends it inside a 10-minute device call either way; every figure is on stderr
# (bench_gpu.log) as it is measured, the JSON object at the end (bench_gpu.json).
#
# Here, once, with pip (the GPU image has torch, numpy, opencv, numba, safetensors, prometheus-client
# but not these; Python 3.12 wheels, about 18 MB):   bash training/gpu_check.sh wheels
# There (the device tool's run, carry [".whl"]):       bash training/gpu_check.sh
# It writes $OUT/bench_gpu.json and $OUT/bench_gpu.log ($OUT: the device tool's folder, else runs/gpu_check).
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
WHEELS="OpenImageIO>=3.1,<3.3 pymatting==1.1.16 grpcio==1.85.1 grpcio-tools==1.85.1 grpcio-health-checking==1.85.1
        grpcio-reflection==1.85.1 protobuf>=6.31,<8"
if [ "$1" = wheels ]; then
  grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
  exec "${PYTHON:-.venv/bin/python}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl $WHEELS
fi
. training/gpu_env.sh  # PY, the carried wheels, the gRPC code
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$OUT/bench_gpu.log"
PYTHONUNBUFFERED=1 timeout 470 $PY -m plugin.cli.main bench gpu --json > "$OUT/bench_gpu.json" 2>> "$OUT/bench_gpu.log"
rc=$?
tail -n 60 "$OUT/bench_gpu.log"
exit $rc
