"""Process-wide settings for the long-running processes (the gRPC server and the workers).

The garbage collector: CPython's default collects the youngest generation every 700 net
allocations, and every collection of an older one walks every object that survived, which in
these processes are many (decoded payloads, the adjudicator's aggregates, read-model rows). The
data here is plain dicts and lists without reference cycles, so collecting rarely loses nothing,
and it saves close to half of the projections' CPU and about a tenth of the adjudicator's
(measured with ``make bench``). ``gc.freeze()`` moves everything alive after start-up (modules,
classes, compiled protos) out of the collector's sight for good.

The gRPC server collects more often (`SERVER_YOUNGEST_GENERATION_THRESHOLD`): a collection stops
every call in flight, and its garbage is not rare. For every call, `grpc.aio`'s server leaves
about six objects in a reference cycle: the coroutine of its `_find_method_handler`, which holds
its own `query_handlers` closure, and the call's details and metadata. Only the collector frees
them. After four minutes of load at the 50,000 threshold, each youngest collection freed
14,000-34,000 such objects and took 26-139 ms; a middle one took 272 ms. At 5,000 the youngest
took 4 ms on average (27 at most) and the middle ones 25 ms on average (58 at most), for at least
0.8 s more of the collector's CPU over 220 s (README "Scale", eleventh pass).
"""

from __future__ import annotations

import gc

YOUNGEST_GENERATION_THRESHOLD = 50_000
SERVER_YOUNGEST_GENERATION_THRESHOLD = 5_000
OLDER_GENERATION_THRESHOLDS = (20, 100)


def tune_garbage_collector(youngest: int = YOUNGEST_GENERATION_THRESHOLD) -> None:
    """Collect rarely (the server: `SERVER_YOUNGEST_GENERATION_THRESHOLD`), and never walk what
    start-up left alive; call once the process is set up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(youngest, *OLDER_GENERATION_THRESHOLDS)
