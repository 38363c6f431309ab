"""Read models (projections): SQL tables fed from the ledger's events, and their queries.

What lives here, from the bottom up:

* ``errors``: ``ProjectionLagError`` (DEADLINE_EXCEEDED), ``PositionBeyondHeadError`` (OUT_OF_RANGE) and friends;
* ``events``: the ledger read as a projection reads it (notifications in position order, payloads
  decoded from the stored JSON, the domain's event topics);
* ``store``: the PostgreSQL side of writing — a view that is an eventsourcing
  ``PostgresTrackingRecorder`` and writes a whole batch of row changes together with its tracking
  position in ONE transaction (exactly once), over tables created by ``migrations/`` only;
* ``reading``: the PostgreSQL side of reading, shared by every query — rows into result
  dataclasses, waiting for the caller's position (read-your-writes), argument checks, keyset pages;
* one module per read model, each holding its writer (a ``ReadModel`` that turns a batch of ledger
  notifications into row changes), its rows (frozen dataclasses) and its queries (what the gRPC
  read side calls): ``claims`` (claim status, payer worklist, adjudication notices, claim
  changes), ``benefits`` (member coverage, accumulators, explanation of benefits), ``payments``
  (payments and remittances), ``timeline`` (every event of a claim and its payments, with hashes),
  ``access`` (every read of a member's data, emergency accesses, consents);
* ``catalog``: every projection by name;
* ``group``: several read models advanced in one transaction per batch (one read, one decoding);
* ``rebuild``: rebuild from position 0 into ``<table>_rebuild`` and swap in atomically, status;
* ``runner``: the runners (all projections as one group, or one alone; batches after the tracked
  positions, woken by ``LISTEN ledger_events``) and the ``ProjectionSupervisor`` that restarts a
  runner that dies and runs a projection that fails in the group on its own;
* ``feed``: the ``NotificationHub`` (one LISTEN per process): how reads that wait for a position
  and the streams learn that a projection moved on;
* ``streams``: the payer and provider server streams as async generators (``FeedStreams``): one
  live reader per feed for every open stream; it sits on top of ``claims``, ``reading`` and
  ``feed``, and only the API's read side imports it.

The benchmarks of the read side (and the synthetic history the tests use) live in
``bench/projections.py``, outside the product.

Projections read events and never write them. May import: the standard library, psycopg,
psycopg_pool, orjson, ``eventsourcing`` (persistence and the PostgreSQL tracking recorder),
``claims_service.errors``, ``claims_service.ledger`` (waiting on LISTEN, decoding payloads), the member keys
a batch's payloads are sealed under (``claims_service.keys``) and the domain's event classes
(``claims_service.domain``) for their topics. Must not import the gRPC layer
(``grpc``, ``claims_service.api``, ``claims_service.server``), the ledger application, its
commands or the adjudicator. Imports between these modules point down the list above and sit at
the top of each module: a cycle is resolved by moving the shared piece down, never by importing
inside a function.
"""
