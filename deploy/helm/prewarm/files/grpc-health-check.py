"""`helm test`: every ready prewarm replica answers gRPC health SERVING for KEDA's service.

Runs in the prewarm image (grpcio and grpcio-health-checking are already there), as
`python -c "<this file>" HOST:PORT [TLS_DIR]`, or as a script. HOST is the headless Service, so it
resolves to one address per ready replica; each is asked `grpc.health.v1.Health/Check` for
`externalscaler.ExternalScaler`. TLS_DIR holds ca.crt (verifies the server, whose certificate must
name HOST) and tls.crt/tls.key (the client certificate of mutual TLS).
Exit 0 when every replica is SERVING; 1 otherwise, one line per replica either way.
"""

import socket
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICE = "externalscaler.ExternalScaler"
TIMEOUT_S = 5.0


def credentials(tls_dir: str) -> grpc.ChannelCredentials:
    folder = Path(tls_dir)
    return grpc.ssl_channel_credentials(
        root_certificates=(folder / "ca.crt").read_bytes(),
        private_key=(folder / "tls.key").read_bytes(),
        certificate_chain=(folder / "tls.crt").read_bytes(),
    )


def status(target: str, host: str, creds: grpc.ChannelCredentials | None) -> str:
    if creds is None:
        channel = grpc.insecure_channel(target)
    else:  # dialled by address, verified by name (as KEDA checks the host part of scalerAddress)
        channel = grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", host)])
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=TIMEOUT_S)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or ":" not in argv[0]:
        print("usage: grpc-health-check HOST:PORT [TLS_DIR]", file=sys.stderr)
        return 2
    host, _, port = argv[0].rpartition(":")
    creds = credentials(argv[1]) if len(argv) == 2 else None
    try:
        found = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as exc:
        print(f"{host}: does not resolve ({exc}): no ready replica?")
        return 1
    failed = 0
    for ip in sorted({entry[4][0] for entry in found}):
        target = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        try:
            answer = status(target, host, creds)
        except grpc.RpcError as exc:
            answer = f"{exc.code().name}: {exc.details()}"
        print(f"{target} {SERVICE}: {answer}")
        failed += answer != "SERVING"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
