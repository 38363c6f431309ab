"""claimsctl, the command line: main.py (the parser, serve, migrate), ledger.py (verify, checkpoints,
bundles, readjudicate, reconcile), projections.py (read models), demo.py (the story over the API).

The top of the import graph: it may import anything of the service; nothing imports it.
"""
