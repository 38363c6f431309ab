"""Several read models advanced together: ONE transaction per batch for all of them.

Run apart, every projection pays for its own transaction, its own read of the same events, its own
decoding of the same payloads and its own commit: per claim, four times over. A ``ViewGroup``
locks every member's tracking row at once, reads the notifications after the lowest of their
positions once (each payload decoded once, shared), lets each member apply those after its own
position, and writes every member's rows and new position in the same transaction. The
exactly-once argument of ``store`` holds for each member unchanged: its rows and its position still
commit together, under the lock of its tracking row.

A member whose code fails must not stop the others: the batch is rolled back and ``MemberFailed``
names the member, so that the runner can drop it from the group (and run it on its own, with its
own retries) and go on with the rest. Connection errors concern everyone and are raised as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor, sql
from psycopg.rows import tuple_row

from claims_service.observability import tracing
from projections.events import Notification, Topics, read_notifications
from projections.store import (
    TRACES_CHANNEL,
    TRACES_PER_NOTIFY,
    TRACKING_TABLE,
    Batch,
    ReadModel,
    ReadModelView,
    announce,
    apply_model,
    fast_json,
    lock_tracking_rows,
    progress_notice,
    tracking_name,
)

_ADVANCE_TRACKING = sql.SQL(
    "UPDATE {} SET notification_id = %s WHERE application_name = ANY(%s) AND notification_id < %s"
).format(sql.Identifier(TRACKING_TABLE)).as_bytes()

GroupAfterApply = Callable[[str, Sequence[Notification]], None]


class MemberFailed(Exception):
    """A member's code failed on a batch; nothing of the batch was committed."""

    def __init__(self, name: str) -> None:
        super().__init__(f"projection {name} failed on a batch")
        self.name = name


@contextmanager
def _blamed_on(name: str) -> Iterator[None]:
    """A failure inside is member ``name``'s (``MemberFailed``), unless it is the connection's,
    which is nobody's fault and raised as it is."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError):
        raise
    except Exception as error:
        raise MemberFailed(name) from error


class ViewGroup:
    """The live views of ``models`` (distinct names), advanced one batch at a time together.

    ``after_apply(name, notifications)`` is called inside the batch's transaction after a member's
    rows are written (instrumentation, tests); when it raises, that member has failed.
    """

    def __init__(self, datastore: PostgresDatastore, models: Sequence[ReadModel], *,
                 after_apply: GroupAfterApply | None = None) -> None:
        self.datastore = datastore
        self.models = {model.name: model for model in models}
        self.after_apply = after_apply
        self._wants: dict[str, dict[str, bool]] = {name: {} for name in self.models}
        self._views: dict[str, ReadModelView] = {}  # for members that catch up on their own
        # The trace context of each traced event of the last shared batch (by position), while
        # tracing is on: the runner gives each a span once the batch has committed.
        self.last_traced: dict[int, str] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.models)

    def remove(self, name: str) -> None:
        del self.models[name]
        del self._wants[name]
        self._views.pop(name, None)

    def process_batch(self, limit: int) -> int:
        """Process up to ``limit`` notifications after the lowest member's position, in one
        transaction; return how many (0 when every member is caught up).

        A member more than ``limit`` behind the foremost (a projection added to a running
        service, say) gets a batch of its own instead, in a transaction of its own, so that its
        catching up does not hold the others back; it joins the shared batches once it is near."""
        if not self.models:
            return 0
        with self.datastore.transaction(commit=True) as cur:
            processed, behind, notices = self._process_in(cur, limit)
        announce(self.datastore, notices)  # once committed: see `announce`
        for name in behind:
            processed += self._catch_up(name, limit)
        return processed

    def _catch_up(self, name: str, limit: int) -> int:
        if name not in self._views:
            self._views[name] = ReadModelView(self.datastore, self.models[name])
        hook = self.after_apply
        with _blamed_on(name):
            return self._views[name].process_batch(limit, after_apply=(lambda ns: hook(name, ns)) if hook else None)

    def _process_in(self, cur: Cursor[Any], limit: int) -> tuple[int, list[str], list[tuple[str, str]]]:
        """The shared batch in ``cur``'s transaction: (events processed, the members too far behind
        for it, the NOTIFYs that announce it once it has committed)."""
        positions = self._lock_positions(cur)
        front = max(positions.values())
        behind = [name for name, position in positions.items() if front - position > limit]
        positions = {name: position for name, position in positions.items() if name not in behind}
        start = min(positions.values())
        models = [self.models[name] for name in positions]
        notifications = read_notifications(
            cur.connection, start, limit,
            topics=set().union(*(m.topics for m in models)),
            prefixes=tuple(p for m in models for p in m.topic_prefixes),
            traces=tracing.enabled(),
        )
        self.last_traced = {n.position: n.traceparent for n in notifications if n.traceparent}
        if not notifications:
            return 0, behind, []
        last = notifications[-1].position
        advanced = []
        with fast_json(cur.connection).cursor(row_factory=tuple_row) as rows_cur:
            for model in models:
                if positions[model.name] >= last:
                    continue
                mine = [self._as_seen_by(model, n) for n in notifications if n.position > positions[model.name]]
                with _blamed_on(model.name):
                    batch = Batch(rows_cur)
                    apply_model(model, batch, mine)
                    batch.flush()
                    if self.after_apply is not None:
                        self.after_apply(model.name, mine)
                advanced.append(model.name)
        updated = cur.execute(_ADVANCE_TRACKING, (last, [tracking_name(name) for name in advanced], last), prepare=True).rowcount
        if updated != len(advanced):  # impossible under the row locks; refuse rather than guess
            raise RuntimeError(f"tracking rows moved under their locks: {updated} of {len(advanced)} advanced")
        # The trace contexts first: a stream sends a notice once its progress arrives.
        traced = list(self.last_traced.items())
        notices = [(TRACES_CHANNEL, "\n".join(f"{position} {traceparent}" for position, traceparent in traced[at:at + TRACES_PER_NOTIFY]))
                   for at in range(0, len(traced), TRACES_PER_NOTIFY)]
        notices += [progress_notice(name, last) for name in advanced]
        return len(notifications), behind, notices

    def _lock_positions(self, cur: Cursor[Any]) -> dict[str, int]:
        """Lock every member's tracking row and return the members' positions."""
        by_tracking = lock_tracking_rows(cur, [tracking_name(name) for name in self.models])
        return {name: by_tracking[tracking_name(name)] for name in self.models}

    def _as_seen_by(self, model: ReadModel, n: Notification) -> Notification:
        """``n`` as a view of ``model`` alone would have read it: without a payload for topics
        the model did not ask for."""
        wants = self._wants[model.name]
        wanted = wants.get(n.topic)
        if wanted is None:
            wanted = wants[n.topic] = (n.topic in model.topics or n.topic.startswith(tuple(model.topic_prefixes))
                                       or n.topic == Topics.MEMBER_ERASED)  # every read model purges
        return n if wanted else n.without_payload()
