"""claimsctl witness: run a witness that cosigns the ledger's checkpoints (C2SP tlog-witness), as a
process of its own, on a machine (and under an operator) of its own.

    claimsctl witness init --name NAME --log-key KEY [--log-key KEY ...] [--origin ORIGIN] [--dir DIR]
        make the witness's key, configuration and empty state; print its verifier key
    claimsctl witness serve [--dir DIR] [--addr HOST:PORT]
        serve POST /add-checkpoint (and GET /<origin hash>/checkpoint) until SIGTERM
    claimsctl witness check-evidence FILE --log-key KEY
        what a refusal's evidence file proves, checked with the log's public key only

The log is then given `CLAIMS_WITNESSES='<URL> <witness verifier key>'` (docs/LEDGER.md, "Witnesses").
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from claims_service.config import Config
from claims_service.ledger.note import VerifierKey
from claims_service.ledger.witness import check_evidence
from claims_service.server import wait_for_signal
from claims_service.witness.directory import init_witness, load_witness
from claims_service.witness.server import WitnessServer

log = logging.getLogger("claimsctl.witness")


def register(commands: Any) -> None:
    witness = commands.add_parser("witness", help="a witness that cosigns the ledger's checkpoints (C2SP tlog-witness)")
    sub = witness.add_subparsers(dest="witness_command", required=True)

    init = sub.add_parser("init", help="make a witness: its key, the logs it trusts, an empty state; print its key")
    init.add_argument("--dir", type=Path, metavar="DIR", help="the witness's directory (default <data dir>/witness)")
    init.add_argument("--name", required=True, help="the witness's key name, e.g. witness.example.org/w1")
    init.add_argument("--log-key", action="append", required=True, metavar="KEY",
                      help="the verifier key of a log to witness (what `claimsctl checkpoint` prints), or a file"
                           " holding it; repeat for a log's old and new keys")
    init.add_argument("--origin", help="the log's origin line (default: each log key's name)")
    init.set_defaults(func=cmd_init)

    serve = sub.add_parser("serve", help="serve the witness over HTTP until SIGTERM")
    serve.add_argument("--dir", type=Path, metavar="DIR", help="the witness's directory (default <data dir>/witness)")
    serve.add_argument("--addr", default="127.0.0.1:8181", metavar="HOST:PORT",
                       help="where to listen (default 127.0.0.1:8181)")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-evidence", help="check a witness's evidence file against the log's public key")
    check.add_argument("file", type=Path, metavar="FILE")
    check.add_argument("--log-key", action="append", required=True, metavar="KEY",
                       help="the log's verifier key, or a file holding it")
    check.set_defaults(func=cmd_check_evidence)


def _key(value: str) -> VerifierKey:
    if "+" not in value and Path(value).is_file():
        value = Path(value).read_text(encoding="utf-8")
    return VerifierKey.parse(value.strip())


def _dir(config: Config, args: argparse.Namespace) -> Path:
    return args.dir if args.dir is not None else config.data_dir / "witness"


def cmd_init(config: Config, args: argparse.Namespace) -> int:
    keys = [_key(k) for k in args.log_key]
    logs: dict[str, list[VerifierKey]] = {}
    for key in keys:
        logs.setdefault(args.origin or key.name, []).append(key)
    directory = _dir(config, args)
    cosigner = init_witness(directory, args.name, logs)
    print(cosigner)
    print(f"witness {args.name} made in {directory}, witnessing {', '.join(sorted(logs))}; serve it with"
          f" `claimsctl witness serve`, and give the log CLAIMS_WITNESSES='http://HOST:PORT {cosigner}'",
          file=sys.stderr)
    return 0


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    witness = load_witness(_dir(config, args))
    server = WitnessServer(witness, args.addr).start()
    log.info("witness %s serving on %s (POST /add-checkpoint); verifier key %s; logs: %s", witness.name,
             server.url, witness.verifier_key, ", ".join(sorted(witness.logs)))
    try:
        wait_for_signal()
    finally:
        server.stop()
    return 0


def cmd_check_evidence(config: Config, args: argparse.Namespace) -> int:
    """Exit 0 when the file proves the log signed two inconsistent checkpoints, 1 otherwise."""
    try:
        record = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"claimsctl: cannot read {args.file}: {error}", file=sys.stderr)
        return 2
    verdict = check_evidence(record if isinstance(record, dict) else {}, [_key(k) for k in args.log_key])
    print(verdict.summary)
    return 0 if verdict.proven else 1
