"""protoc plugin for gRPC Python stubs: grpcio-tools ships its grpc_python generator only inside
its protoc (grpc_tools.protoc), not as a protoc-gen-* program, and buf runs only protoc's own
built-in generators as builtins. This hands buf's request to that protoc and returns its files.
Run as `python protoc-gen-grpc_python.py` (from protos/buf.gen.yaml) with grpcio-tools installed."""

import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    with tempfile.TemporaryDirectory() as tmp:
        # The request carries every file with its imports (and source comments, which become
        # docstrings), so protoc needs no -I: it reads them as a descriptor set.
        descriptors = Path(tmp, "descriptors.pb")
        descriptors.write_bytes(
            descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString()
        )
        out = Path(tmp, "out")
        out.mkdir()
        target = f"{request.parameter}:{out}" if request.parameter else str(out)
        args = ["protoc", f"--descriptor_set_in={descriptors}", f"--grpc_python_out={target}"]
        if protoc.main([*args, *request.file_to_generate]) != 0:
            response.error = "grpc_tools.protoc failed (its message is above)"
            return response
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            response.file.add(name=path.relative_to(out).as_posix(), content=path.read_text())
    return response


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString())


if __name__ == "__main__":
    main()
