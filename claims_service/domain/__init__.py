"""The domain: event-sourced aggregates of the claims ledger and their inputs.

What lives here:

* ``member``, ``provider``, ``contract``, ``visit``, ``claim``, ``payment``:
  one ``eventsourcing`` ``Aggregate`` each, events nested and named in the past
  tense, ids derived deterministically from business keys (``create_id``);
* ``values``: strict pydantic models of the command inputs; ``codes``: format
  checkers for NPI, ICD-10-CM, CPT/HCPCS and friends; ``ids``: the project
  namespace for ``uuid5`` ids; ``transcodings``: the ``date`` transcoding the
  application must register to store these events.

Other aggregate modules added here (accumulators, rule-set deployments, API
keys) follow the same rules.

Event topics (``claims_service.domain.claim:Claim.Submitted``) are written
into every stored event: renaming a module, an aggregate or an event breaks
reading the ledger back. ``tests/unit/domain`` pins them.

Rules of the room:

* Every command validates its input first (``claims_service.errors.
  ValidationError`` with field paths), then checks the aggregate's state
  (``StateError`` and friends), and only then triggers its event: a refused
  command leaves no pending event and no changed attribute.
* Events carry plain data only (str, int, bool, None, list, dict with str
  keys, ``datetime.date``), never pydantic models, so that the stored format
  is ours and replays the same under any library version. Every event names
  the principal that caused it (``actor``).
* No clock and no randomness: dates such as ``received_on`` come in as
  arguments, so replaying the events always rebuilds the same state.

May import: the standard library, ``eventsourcing.domain`` (and
``eventsourcing.persistence`` for the transcoding), ``pydantic`` and
``claims_service.errors``. Must not import grpc, psycopg, the application,
the ledger, projections or the adjudicator.
"""
