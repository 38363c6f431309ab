"""Read models (projections): SQL tables fed from the ledger's events, and their queries.

What lives here:

* one module per read model, each a `ReadModel` that turns a batch of ledger notifications into
  row changes: ``claims`` (claim_status, payer_worklist, adjudication_notices), ``benefits``
  (member coverage, accumulators, explanation of benefits), ``payments`` (payments and
  remittances), ``timeline`` (every event of a claim and its payments, with hashes);
* ``events``: the ledger read as a projection reads it (notifications in position order, payloads
  decoded from the stored JSON, the domain's event topics); ``catalog``: every projection by name;
* ``store``: the PostgreSQL side — a view that is an eventsourcing ``PostgresTrackingRecorder``
  and writes a whole batch of row changes together with its tracking position in ONE
  transaction (exactly once), over tables created by ``migrations/`` only;
* ``group``: several read models advanced in one transaction per batch (one read, one decoding);
* ``runner``: the runners (all projections as one group, or one alone; batches after the tracked
  positions, woken by ``LISTEN ledger_events``) and the ``ProjectionSupervisor`` that restarts a
  runner that dies and runs a projection that fails in the group on its own;
* ``rebuild``: rebuild from position 0 into ``<table>_rebuild`` and swap in atomically, status;
* ``queries``: the read functions the gRPC layer calls (plain dataclasses out, read-your-writes);
* ``feed``: the ``NotificationHub`` (one LISTEN per process) behind the payer and provider streams;
* ``bench``: the rebuild-rate and lag benchmarks;
* ``errors``: ``ProjectionLagError`` (UNAVAILABLE, retryable) and friends.

Projections read events and never write them. May import: the standard library, psycopg,
psycopg_pool, ``eventsourcing`` (persistence and the PostgreSQL tracking recorder),
``claims_service.errors``, ``claims_service.notifications`` (waiting on LISTEN) and the domain's
event classes (``claims_service.domain``) for their topics. Must not import the gRPC layer (``grpc``, ``claims_service.api``, ``claims_service.server``),
the ledger application or the adjudicator; ``bench`` alone may drive the write side to make a
history to measure.
"""
