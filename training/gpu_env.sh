# Sourced by training/gpu_check.sh and training/train_gpu.sh on a lent GPU machine: the carried wheels
# (.whl/, made here by `bash training/gpu_check.sh wheels`) installed beside the image's Python, and the
# gRPC code generated, as install.py does on a full set-up. Sets PY (the Python to run).
PY=${PYTHON:-python3}
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
[ -f server/api/mattebox_pb2_grpc.py ] || $PY -m grpc_tools.protoc -I . --python_out=. --pyi_out=. \
  --grpc_python_out=. server/api/mattebox.proto || exit 1
