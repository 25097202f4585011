"""Route a prompt and report its outcome with a client generated from proto/.

    pip install grpcio grpcio-tools
    python -m grpc_tools.protoc -I ../../proto --python_out=. --grpc_python_out=. \
        signalbox/v1/router.proto
    python route.py 127.0.0.1:50051
    python route.py localhost:50051 ca.pem                         # [server.tls]
    python route.py localhost:50051 ca.pem client.pem client.key   # with client_ca (mTLS)
"""
import sys

import grpc

from signalbox.v1 import router_pb2 as pb
from signalbox.v1 import router_pb2_grpc as rpc


def channel_to(addr: str, tls: list) -> grpc.Channel:
    """Plaintext, or TLS with the server's CA (and this client's certificate and key)."""
    if not tls:
        return grpc.insecure_channel(addr)
    read = lambda path: open(path, "rb").read()
    ca, *pair = tls
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(ca),
        certificate_chain=read(pair[0]) if pair else None,
        private_key=read(pair[1]) if pair else None,
    )
    return grpc.secure_channel(addr, credentials)


def main(addr: str, tls: list) -> None:
    with channel_to(addr, tls) as channel:
        router = rpc.RouterStub(channel)
        decision = router.Route(
            pb.RouteRequest(
                tenant_id="acme",
                user_id="alice",
                text="Write a Python function that merges two sorted lists.",
                mode=pb.MODE_INTERACTIVE,
                required_capabilities=[pb.CAPABILITY_JSON_OUTPUT],
                quality_preference=0.5,
            ),
            timeout=1.0,
        )
        print("primary:", decision.primary.model_id, decision.primary.lane)
        print("fallbacks:", [f.model_id for f in decision.fallbacks])
        for r in decision.reasons:
            print(f"  [{r.policy_id}] {r.message}")
        ack = router.ReportOutcome(
            pb.Outcome(
                decision_id=decision.decision_id,
                model_id=decision.primary.model_id,
                success=True,
                latency_ms=850,
                tokens_in=40,
                tokens_out=220,
                attempt=1,  # a retry of this report books nothing twice
            ),
            timeout=1.0,
        )
        print("booked cost:", ack.cost_usd, "circuit:", ack.circuit_state)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051", sys.argv[2:])
