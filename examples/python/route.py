"""Route a prompt and report its outcome with a client generated from proto/.

    pip install grpcio grpcio-tools
    python -m grpc_tools.protoc -I ../../proto --python_out=. --grpc_python_out=. \
        signalbox/v1/router.proto
    python route.py 127.0.0.1:50051                      # plaintext, no key (loopback default)
    SIGNALBOX_API_KEY=sbx_... python route.py signalbox.internal:50051 --ca ca.pem
    python route.py HOST:PORT --ca ca.pem --cert client.pem --key client.key   # mTLS

With an API key (`[auth] mode = "api_key"`), `tenant_id` may be left empty: the key's tenant is
used. The key is read from the environment, not the command line, so it stays out of `ps`.
"""
import argparse
import os

import grpc

from signalbox.v1 import router_pb2 as pb
from signalbox.v1 import router_pb2_grpc as rpc


def channel(addr: str, ca: str | None, cert: str | None, key: str | None) -> grpc.Channel:
    if ca is None:
        return grpc.insecure_channel(addr)

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert)
    )
    return grpc.secure_channel(addr, credentials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addr", nargs="?", default="127.0.0.1:50051")
    parser.add_argument("--ca", help="CA bundle (PEM) that signed the server's certificate: TLS")
    parser.add_argument("--cert", help="client certificate (PEM), for mTLS")
    parser.add_argument("--key", help="client private key (PEM), for mTLS")
    parser.add_argument("--tenant", default="acme", help="tenant_id ('' with an API key: the key's)")
    args = parser.parse_args()
    api_key = os.environ.get("SIGNALBOX_API_KEY")
    metadata = [("authorization", f"Bearer {api_key}")] if api_key else []

    with channel(args.addr, args.ca, args.cert, args.key) as ch:
        router = rpc.RouterStub(ch)
        decision = router.Route(
            pb.RouteRequest(
                tenant_id=args.tenant,
                user_id="alice",
                text="Write a Python function that merges two sorted lists.",
                mode=pb.MODE_INTERACTIVE,
                required_capabilities=[pb.CAPABILITY_JSON_OUTPUT],
                quality_preference=0.5,
            ),
            metadata=metadata,
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
            metadata=metadata,
            timeout=1.0,
        )
        print("booked cost:", ack.cost_usd, "circuit:", ack.circuit_state)


if __name__ == "__main__":
    main()
