"""The write side of the claims ledger.

Domain aggregates (`domain/`), the ledger application (`application.py`), the hash chain and
its verification (`ledger/`), the gRPC servicers (`api/`), configuration, database set-up and
the `claimsctl` command line. This package wires `adjudicator` and `projections` together;
neither of them imports it.
"""
