"""Server streams on an event loop: a payer's adjudication notices and a provider's claim changes,
resumable, in ledger order, with heartbeats, at the cost of a coroutine each.

``FeedStreams(hub, executor)`` serves every stream of one process on the loop that calls it. A
stream first catches up by reading its own rows from the table (``position > after``, in pages,
through the hub's small connection pool, in ``executor`` so the loop never blocks). Once caught
up it joins its party's *channel*. Each feed has one reader: each time the projection advances
it reads the rows above its cursor for every party with a channel, in one query, and appends
them to their channels, which keep the last ``LOG_LIMIT`` items in memory. So a thousand open
streams cost one query per advance, not a thousand, and a tenant's streams wake only for its own
rows. A stream that falls further behind than its channel remembers goes back to reading the
table at its own pace; a consumer that stops reading holds no connection and holds up no one.

No gaps, in order: the tables are append-only and written in position order together with the
projection's tracking row, so reading the tracked position first and then the rows above a
position gives every row up to the tracked position. ``Heartbeat(position)`` says every item of
this stream up to ``position`` has been delivered; one is sent when the stream first catches up
and then at most every ``heartbeat_interval`` seconds while idle.

Before a batch of items is sent (a page read from the table, or what a channel holds beyond the
stream's position), ``before_send(items)`` is awaited when the caller gives one: the access log
records the batch there, so that nothing is sent before its record is committed.

Traced (while tracing is on): an item whose event carries a trace context (the adjudication of a
traced claim) is sent inside a ``stream.notice`` span of that trace. The projections NOTIFY the
contexts of a batch's traced events with its progress, and the hub keeps them
(``NotificationHub.traceparent``): no query is added to any page.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from psycopg import Connection

from claims_service.observability import tracing
from projections.claims import ClaimStatusModel, adjudication_notices, claim_changes
from projections.feed import Heartbeat, NotificationHub
from projections.reading import MAX_PAGE_SIZE, projection_position

log = logging.getLogger(__name__)

T = TypeVar("T")
LOG_LIMIT = 1000  # items a channel keeps for streams that are slightly behind
RESCAN_SECONDS = 1.0  # a channel re-reads its table this often even without a NOTIFY (one lost)


@dataclass(frozen=True)
class Feed(Generic[T]):
    """What a stream reads: a projection's append-only table, by party, in position order.
    ``fetch(conn, party_or_parties, after, limit)``; ``party_of(item)``; ``position_of(item)``."""

    name: str
    projection: str
    fetch: Callable[[Connection[Any], str | list[str], int, int], Sequence[T]]
    party_of: Callable[[T], str]
    position_of: Callable[[T], int]


ADJUDICATIONS: Feed[Any] = Feed(
    "adjudications", ClaimStatusModel.name,
    lambda conn, payers, after, limit: adjudication_notices(conn, payers, after, limit=limit),
    lambda notice: notice.payer_id,
    lambda notice: notice.position,
)
CLAIM_CHANGES: Feed[Any] = Feed(
    "claim_changes", ClaimStatusModel.name,
    lambda conn, providers, after, limit: claim_changes(conn, providers, after, limit=limit),
    lambda claim: claim.provider_id,
    lambda claim: claim.last_position,
)


@dataclass(eq=False)
class _Channel:
    """One party's live items: every item of its feed with position in (complete_after, the
    reader's cursor]."""

    complete_after: int
    positions: list[int] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    subscribers: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def after(self, position: int) -> tuple[list[int], list[Any]]:
        start = bisect.bisect_right(self.positions, position)
        return self.positions[start:], self.items[start:]

    def append(self, position: int, item: Any) -> None:
        self.positions.append(position)
        self.items.append(item)
        if len(self.items) > 2 * LOG_LIMIT:  # trim in halves: amortised O(1) per item
            drop = len(self.items) - LOG_LIMIT
            self.complete_after = self.positions[drop - 1]
            del self.positions[:drop], self.items[:drop]

    def wake(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


@dataclass(eq=False)
class _Reader:
    """A feed's one live reader and its parties' channels."""

    feed: Feed[Any]
    cursor: int
    channels: dict[str, _Channel] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


class FeedStreams:
    """``FeedStreams(hub, executor, *, heartbeat_interval=5.0, page_size=100)``;
    ``stream(feed, party, after) -> AsyncIterator[item | Heartbeat]`` on one event loop;
    ``open_streams`` counts them; ``close()`` stops the readers."""

    def __init__(self, hub: NotificationHub, executor: Executor, *, heartbeat_interval: float = 5.0,
                 page_size: int = 100) -> None:
        self.hub = hub
        self.executor = executor
        self.heartbeat_interval = heartbeat_interval
        # A short page must mean "caught up", so the page is what the query really returns.
        self.page_size = min(max(1, page_size), MAX_PAGE_SIZE)
        self._readers: dict[str, _Reader] = {}
        self._advanced: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.open_streams = 0
        self.queries = 0  # table reads, for tests and benchmarks

    def close(self) -> None:
        for reader in self._readers.values():
            if reader.task is not None:
                reader.task.cancel()
        self._readers.clear()

    # --- the hub's wake-ups, on the loop ---------------------------------------------------------

    def _attach(self) -> None:
        if self._loop is None:
            self._loop = loop = asyncio.get_running_loop()
            self.hub.add_listener(lambda projection: loop.call_soon_threadsafe(self._on_advance, projection))

    def _on_advance(self, projection: str) -> None:
        event = self._advanced.pop(projection, None)
        if event is not None:
            event.set()

    async def _wait_for_advance(self, projection: str, beyond: int, timeout: float) -> None:
        if self.hub.position(projection) > beyond:
            return
        event = self._advanced.setdefault(projection, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    # --- reading the table ---------------------------------------------------------------------

    async def _read(self, feed: Feed[T], parties: str | list[str], after: int) -> tuple[int, Sequence[T]]:
        """(tracked position, the page of items after ``after``), read in the executor."""

        def read() -> tuple[int, Sequence[T]]:
            with self.hub.pool.connection() as conn:
                # The position first: every row at or below it is committed, hence in the read below.
                tracked = projection_position(conn, feed.projection)
                found = feed.fetch(conn, parties, after, self.page_size)
                return tracked, found

        self.queries += 1
        return await asyncio.get_running_loop().run_in_executor(self.executor, read)

    def _notice_span(self, feed: Feed[Any], item: Any) -> Any:
        """The span that sends a traced item (None for the others)."""
        if not tracing.enabled():
            return None
        position = feed.position_of(item)
        traceparent = self.hub.traceparent(position)
        if traceparent is None:
            return None
        return tracing.start_span("stream.notice", traceparent, attributes={"claims.feed": feed.name,
                                                                             "claims.position": position})

    async def _drive(self, reader: _Reader) -> None:
        """The feed's live reader: the subscribed parties' rows above the cursor, each advance."""
        feed = reader.feed
        while reader.channels:
            await self._wait_for_advance(feed.projection, reader.cursor, RESCAN_SECONDS)
            try:
                while reader.channels:
                    parties = sorted(reader.channels)
                    asked = set(parties)
                    tracked, found = await self._read(feed, parties, reader.cursor)
                    woken = set()
                    for item in found:
                        channel = reader.channels.get(feed.party_of(item))
                        if channel is not None:  # None: its last stream left during the read
                            channel.append(feed.position_of(item), item)
                            woken.add(id(channel))
                    full = len(found) >= self.page_size
                    cursor = feed.position_of(found[-1]) if full else max(tracked, reader.cursor)
                    reader.cursor = max(cursor, reader.cursor)
                    for party, channel in reader.channels.items():
                        if party not in asked:
                            # Joined during the read, which did not ask for its rows: it holds
                            # only what comes after this cursor (its streams re-read the table).
                            channel.complete_after = max(channel.complete_after, cursor)
                            woken.add(id(channel))
                        if id(channel) in woken:
                            # Only these: an idle stream learns the new cursor at its heartbeat,
                            # so a thousand idle streams cost nothing per advance.
                            channel.wake()
                    if not full:
                        break
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a database hiccup must not end every stream of the feed
                log.warning("feed %s: live read failed; retrying", feed.name, exc_info=True)
                await asyncio.sleep(RESCAN_SECONDS)
        self._readers.pop(feed.name, None)

    def _join(self, feed: Feed[Any], party: str, caught_up_at: int) -> tuple[_Reader, _Channel]:
        reader = self._readers.get(feed.name)
        if reader is None:
            reader = self._readers[feed.name] = _Reader(feed, cursor=caught_up_at)
        channel = reader.channels.get(party)
        if channel is None:
            # It holds every item above the reader's cursor from now on.
            channel = reader.channels[party] = _Channel(complete_after=reader.cursor)
        if reader.task is None or reader.task.done():
            reader.task = asyncio.get_running_loop().create_task(self._drive(reader), name=f"feed-{feed.name}")
        return reader, channel

    @contextmanager
    def _subscribed(self, reader: _Reader, party: str, channel: _Channel) -> Any:
        channel.subscribers += 1
        try:
            yield
        finally:
            channel.subscribers -= 1
            if channel.subscribers == 0 and reader.channels.get(party) is channel:
                del reader.channels[party]

    # --- a stream ------------------------------------------------------------------------------

    async def stream(self, feed: Feed[T], party: str, after: int, *,
                     before_send: Callable[[Sequence[T]], Awaitable[None]] | None = None) -> AsyncIterator[T | Heartbeat]:
        """Every item of ``party``'s feed after ``after``, in ledger order, with heartbeats, until
        the consumer stops iterating (gRPC cancels the task when its client goes away);
        ``before_send(batch)`` is awaited before each batch of items is sent."""
        self._attach()
        self.open_streams += 1
        try:
            next_beat = time.monotonic()  # the first time it catches up
            while True:
                reader = self._readers.get(feed.name)
                channel = reader.channels.get(party) if reader is not None else None
                if channel is None or after < channel.complete_after:
                    # Catch up from the table, a page at a time.
                    tracked, found = await self._read(feed, party, after)
                    if found and before_send is not None:
                        await before_send(found)
                    for item in found:
                        span = self._notice_span(feed, item)
                        try:
                            yield item
                        finally:  # sent (or the stream closed meanwhile)
                            if span is not None:
                                span.end()
                        after = feed.position_of(item)
                    if len(found) >= self.page_size:
                        continue
                    after = max(after, tracked)
                    reader, channel = self._join(feed, party, after)
                    if after < channel.complete_after:
                        continue  # the reader is ahead of this read: read again
                with self._subscribed(reader, party, channel):
                    while after >= channel.complete_after:
                        # The cursor as of this look at the channel: while this stream yields,
                        # the reader may append more and move the cursor past items not yet sent.
                        cursor = reader.cursor
                        positions, items = channel.after(after)
                        if items and before_send is not None:
                            await before_send(items)
                        for position, item in zip(positions, items, strict=True):
                            span = self._notice_span(feed, item)
                            try:
                                yield item
                            finally:  # sent (or the stream closed meanwhile)
                                if span is not None:
                                    span.end()
                            after = position
                        if after >= channel.complete_after:
                            after = max(after, cursor)  # everything up to that cursor is delivered
                        now = time.monotonic()
                        if now >= next_beat:
                            yield Heartbeat(after)
                            next_beat = now + self.heartbeat_interval
                        if not channel.after(after)[0]:
                            try:
                                await asyncio.wait_for(channel.changed.wait(), max(0.0, next_beat - time.monotonic()))
                            except TimeoutError:
                                pass
                        if reader.channels.get(party) is not channel:
                            break  # the reader stopped (closed): start over
        finally:
            self.open_streams -= 1


__all__ = ["ADJUDICATIONS", "CLAIM_CHANGES", "Feed", "FeedStreams"]
