"""The chat's outbox without sockets: fake streams that take only what a test lets them."""

from __future__ import annotations

import asyncio

from socketeer.services.chat.session import Outbox


class FakeTransport:
    """A byte stream whose peer reads ``reads`` bytes of each write at once, and no more."""

    def __init__(self, reads: int) -> None:
        self.reads = reads
        self.buffer = 0
        self.received = 0
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        taken = min(len(data), max(self.reads - self.received, 0))
        self.received += taken
        self.buffer += len(data) - taken

    @property
    def write_buffered(self) -> int:
        return self.buffer

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True
        self.buffer = 0


class FakeSession:
    """What the outbox uses of a ChatSession."""

    def __init__(self, name: str, reads: int, order: list[str] | None = None) -> None:
        self.name = name
        self.order = order if order is not None else []
        self.transport = self.stream = FakeTransport(reads)
        self.pending: list[bytes] = []
        self.close_after_flush = False
        self.dropped: list[str] = []
        self.cut_off: list[str] = []

    @property
    def closing(self) -> bool:
        return self.transport.closing

    def drop(self, reason: str) -> None:
        self.dropped.append(reason)
        self.transport.close()

    def cut(self, reason: str) -> None:
        self.cut_off.append(reason)
        self.order.append(self.name)
        self.transport.abort()


def run_rounds(outbox: Outbox, sessions: list[FakeSession], line: bytes, rounds: int) -> list[int]:
    """Deliver ``line`` to every session ``rounds`` times, a pass each; the total after each."""
    totals: list[int] = []

    async def main() -> None:
        for _ in range(rounds):
            outbox.post([(sessions, line)])  # type: ignore[list-item]
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            totals.append(sum(s.transport.buffer for s in sessions))

    asyncio.run(main())
    return totals


def test_all_members_backlogs_stay_within_the_total_and_the_slowest_go_first() -> None:
    outbox = Outbox(max_queue=100_000, max_queue_total=50_000)
    order: list[str] = []
    reader = FakeSession("reader", reads=10**9, order=order)
    slow = [FakeSession(f"slow{n}", reads=n * 4_000, order=order) for n in (3, 1, 2)]
    never = FakeSession("never", reads=0, order=order)
    sessions = [reader, *slow, never]
    totals = run_rounds(outbox, sessions, b"x" * 1000, rounds=60)
    assert max(totals) <= 50_000
    assert outbox.queued == totals[-1]
    # The one that never read is cut first, then the others from the slowest up.
    assert order == ["never", "slow1", "slow2"]
    assert never.transport.aborted
    assert never.cut_off[0].startswith("server output over 50000 bytes; ")
    assert reader.transport.received == 60_000
    assert not reader.dropped
    assert not reader.cut_off


def test_a_member_over_its_own_limit_is_dropped_without_being_sent_more() -> None:
    outbox = Outbox(max_queue=5_000, max_queue_total=10**9)
    reader = FakeSession("reader", reads=10**9)
    never = FakeSession("never", reads=0)
    run_rounds(outbox, [reader, never], b"y" * 1000, rounds=20)
    assert never.dropped == ["not reading: more than 5000 bytes waiting to be sent"]
    assert never.transport.buffer <= 6_000
    assert reader.transport.received == 20_000


def test_one_big_delivery_to_a_reading_member_is_not_a_reason_to_drop_it() -> None:
    outbox = Outbox(max_queue=5_000, max_queue_total=10**9)
    reader = FakeSession("reader", reads=10**9)
    run_rounds(outbox, [reader], b"z" * 20_000, rounds=1)
    assert reader.transport.received == 20_000
    assert not reader.dropped
