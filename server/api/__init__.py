"""The gRPC protocol, `mattebox.v1` (mattebox.proto), and its generated Python code.

`mattebox_pb2*.py` are generated from the .proto by `python3 install.py` (grpcio-tools) and are not
committed, so they can never disagree with the .proto.
"""
try:
    from server.api import mattebox_pb2 as pb
    from server.api import mattebox_pb2_grpc as rpc
except ImportError as exc:  # pragma: no cover - only before install.py has run
    raise ImportError(
        "the gRPC code generated from server/api/mattebox.proto is missing or stale: "
        "run `python3 install.py` to generate it"
    ) from exc

SERVICE = pb.DESCRIPTOR.services_by_name["Matting"].full_name

#: Input enum <-> the names `mattebox models --json` and the hosts use (here, not in codec: no numpy)
INPUT_NAMES = {pb.IMAGE: "image", pb.TRIMAP: "trimap", pb.BACKGROUND: "background"}
INPUT_CODES = {v: k for k, v in INPUT_NAMES.items()}

__all__ = ["pb", "rpc", "SERVICE", "INPUT_NAMES", "INPUT_CODES"]
