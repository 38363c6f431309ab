"""`make bench`: the project's performance figures, measured on a fresh embedded PostgreSQL.

Each part prints its figures and adds them to bench/results.json. Absolute rates drift on a shared
machine, so every run also measures baselines (raw commits, appends without the hash chain) and prints
our rates as ratios of them.
"""

import claims_service  # noqa: F401 - before grpc is imported anywhere in the bench: it sets gRPC's fork handling
