"""`mattebox models`: the models, their inputs, size, weights and the weights' identity (digest).

--json prints one object per model; "digest" is "sha256:<hex>" of the weights file served ("" for a
model without learned weights) and changes when the weights are re-installed, "card" the weights' card
(what trained them) as an object ({} when there is none). The text table shows the digest's first
12 hex digits."""
from __future__ import annotations

import argparse
import json
import sys

import grpc

from plugin.cli.connect import add_server_arguments, connection, explain


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_server_arguments(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of objects")


def rows(args: argparse.Namespace) -> list[dict]:
    if args.server:
        from plugin.client.connection import Client
        from server.api import INPUT_NAMES

        with Client(args.server, **connection(args)) as c:
            reply = c.listing()
            for warning in reply.warnings:  # stderr: --json's stdout stays the list hosts parse
                print(f"mattebox models: WARNING from {args.server}: {warning}", file=sys.stderr)
            return [dict(name=m.name, description=m.description, inputs=[INPUT_NAMES[i] for i in m.inputs],
                         params=m.params, gflops_512=m.gflops_512, weights=m.weights_ready, device=m.device,
                         digest=m.digest, card=json.loads(m.card or "{}"))
                    for m in reply.models]
    from models.registry import Registry

    return [dict(name=i.name, description=i.description, inputs=list(i.inputs), params=i.params,
                 gflops_512=i.gflops_512, weights=i.weights, device=i.device, digest=i.digest,
                 card=json.loads(i.card or "{}")) for i in Registry().infos()]


def run(args: argparse.Namespace) -> int:
    try:
        models = rows(args)
    except grpc.RpcError as err:
        print(f"mattebox models: {explain(err, args.server)}", file=sys.stderr)
        return 1
    except ValueError as err:  # a server list that is malformed or names a host that does not resolve
        print(f"mattebox models: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(models))
        return 0
    print(f"{'model':<14} {'inputs':<26} {'params':>10} {'GFLOPs@512':>10} {'weights':>7} {'digest':<19} "
          f"{'device':<7} description")
    for m in models:
        print(f"{m['name']:<14} {', '.join(m['inputs']):<26} {m['params']:>10,} {m['gflops_512']:>10.2f} "
              f"{'yes' if m['weights'] else 'NO':>7} {m['digest'][:19] or '-':<19} {m['device']:<7} "
              f"{m['description']}")
    return 0
