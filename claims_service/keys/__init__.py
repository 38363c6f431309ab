"""Member data keys: each member's data on the ledger is sealed under a key of its own, so that
destroying the key erases the data without changing a stored byte (crypto-shredding).

* ``kek``: the key-encryption keys (KEKs), held outside the ledger (a file or an environment
  variable; several by id, new wraps under the newest), behind an interface a KMS can implement;
* ``store``: the data keys of one database (``member_keys``, ``member_data_keys``; migration
  0020), wrapped by a KEK, created on a member's first event, cached unwrapped in memory (bounded,
  revalidated every few seconds) and destroyed by an erasure; ``fresh_keys`` reads the keys a batch
  of events needs in the batch's own snapshot (projections, reconciliation);
* ``sealing``: the ledger application's side: which stream belongs to which member, sealing an
  event's member data (``claims_service.domain.phi`` says which) on the way in, opening it (or
  reading "erased") on the way out.

The stored format is the ledger's (``claims_service.ledger.payloads``); docs/LEDGER.md, "Member
data keys", specifies it and README, "Erasure", tells the story.

May import: the standard library, cryptography, psycopg, ``claims_service.errors``, the ledger's
payload format and the domain (its PHI classification and ids).
"""
