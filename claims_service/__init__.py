"""The claims ledger service: everything but the pure rules (`adjudicator`) and the read models
(`projections`). From the bottom of the import graph to the top (tests/unit/test_layers.py keeps
it so):

errors.py           the one error root; each error names its gRPC status
ledger/             tamper evidence: chain, Merkle tree, signed notes and checkpoints, bundles,
                    payload decoding; a third party can lift it out
domain/             the aggregates and their events (event topics embed these module paths)
config.py           every setting, read once; database.py, migrate.py: the PostgreSQL server
application.py      the eventsourcing application: persistence, transcoding, receipts
group_commit.py     many requests' writes in one commit
adjudication/       the worker that decides claims, and the money every decision moves
commands.py         the write-side facade: one method per command; reconcile.py: the money audit
api/                gRPC servicers and converters (reads come from `projections`)
server.py, workers.py, bootstrap.py   the processes and their wiring
cli/                claimsctl
"""

import os

# gRPC's fork handlers (on by default in its wheels) run in every fork()ed child, and crash it now and
# then when other threads are inside gRPC at that moment (SIGSEGV or SIGBUS before the child's exec).
# No process here forks to go on using gRPC: children are spawned (multiprocessing "spawn"), and the
# embedded PostgreSQL's commands are fork + exec (as its own user). Set before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
