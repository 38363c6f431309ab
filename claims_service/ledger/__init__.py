"""The ledger's tamper evidence, with nothing of the claims in it: the canonical row encoding and
chain verification (chain.py, verify.py), the Merkle tree (merkle.py, tree.py), signed notes
(note.py), the signing key (signing_key.py), checkpoints (checkpointer.py) and the audit of a kept
checkpoint (audit.py), claim bundles' proofs (bundle.py), reading stored payloads (payloads.py)
and what every follower of the ledger needs: waiting on NOTIFY, backing off between restarts (following.py).

Imports the standard library, cryptography, psycopg, orjson, protobuf with the generated
``claims.v1`` messages, and ``claims_service.errors`` only (tests/unit/test_layers.py).
"""
