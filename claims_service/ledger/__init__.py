"""The ledger's tamper evidence: the canonical row encoding, chain verification, and (later)
the Merkle tree and signed checkpoints. Pure functions over rows plus thin readers of the events
table; imports the standard library and psycopg only.
"""
