"""Slow down, then ban, addresses that keep failing to authenticate; without I/O.

What OpenSSH (``MaxAuthTries``, ``PerSourcePenalties``) and fail2ban do for
logins, for any service that checks a secret:

- every failed attempt from an address is answered only after a delay that
  doubles with each failure still inside the window (0.1 s, 0.2 s, ... up to
  ``max_delay``), so guessing one after another is slow;
- the ``max_failures``-th failure inside ``window`` seconds bans the address
  for ``ban`` seconds: every attempt from it is refused at once, even with
  the right secret, until the ban expires (then it starts afresh);
- a success forgets the address's failures, once a window: an address that
  goes on failing between successes (one account's right password between
  guesses at others') keeps its failures until they leave the window, and
  is banned like any other.

Failures are recorded the moment they happen, before the delayed answer,
so many connections guessing at once are banned as soon as
``max_failures`` of them have failed.  At most ``max_tracked`` addresses
are remembered: records whose failures and ban have expired are forgotten,
and past the cap the least recently failing address is.  The caller passes
the time (``now``, from a monotonic clock) and decides what an address is
(an IP address, a user name).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

__all__ = ["AuthThrottle", "Failure"]


@dataclass(frozen=True)
class Failure:
    """What one failed attempt costs: wait ``delay`` s before answering; a new ban, if any."""

    delay: float
    #: Seconds of the ban this failure started, or 0.0 if it started none.
    banned_for: float = 0.0
    #: Failures from this address inside the window, this one included.
    failures: int = 1


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)  # times, oldest first
    banned_until: float = -math.inf
    forgiven: float = -math.inf  # when a success last forgot the failures


class AuthThrottle:
    """Per-address failed-authentication bookkeeping: delays, bans and their expiry."""

    def __init__(
        self,
        *,
        max_failures: int = 6,
        window: float = 600.0,
        ban: float = 600.0,
        first_delay: float = 0.1,
        max_delay: float = 3.2,
        max_tracked: int = 10_000,
    ) -> None:
        if max_failures < 1 or max_tracked < 1:
            raise ValueError("max_failures and max_tracked must be at least 1")
        if min(window, ban, first_delay, max_delay) < 0:
            raise ValueError("times must not be negative")
        self.max_failures = max_failures
        self.window = window
        self.ban = ban
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.max_tracked = max_tracked
        self._records: OrderedDict[str, _Record] = OrderedDict()  # least recently failed first

    def __len__(self) -> int:
        """How many addresses are remembered."""
        return len(self._records)

    def ban_remaining(self, key: str, now: float) -> float:
        """Seconds ``key`` stays banned (0.0 if it may try now)."""
        self._forget_expired(now)
        record = self._records.get(key)
        return max(0.0, record.banned_until - now) if record is not None else 0.0

    def failed(self, key: str, now: float) -> Failure:
        """Record a failed attempt by ``key``; say how long to wait before answering it."""
        self._forget_expired(now)
        record = self._records.pop(key, None) or _Record()
        self._records[key] = record  # now the most recent
        failures = record.failures
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        failures.append(now)
        count = len(failures)
        delay = min(self.max_delay, self.first_delay * 2.0 ** min(count - 1, 64))
        banned_for = 0.0
        if count >= self.max_failures:
            record.banned_until, banned_for = now + self.ban, self.ban
            failures.clear()  # once the ban is over, the address starts afresh
        while len(self._records) > self.max_tracked:
            self._records.popitem(last=False)
        return Failure(delay, banned_for, count)

    def succeeded(self, key: str, now: float) -> None:
        """``key`` authenticated: its failures are forgotten, if none were in this window.

        A ban stays until it expires.
        """
        record = self._records.get(key)
        if (
            record is not None
            and record.failures
            and record.banned_until <= now
            and record.forgiven <= now - self.window
        ):
            record.failures.clear()
            record.forgiven = now
        self._forget_expired(now)

    def _forget_expired(self, now: float) -> None:
        """Drop the oldest records while neither their failures nor their ban count any more."""
        records = self._records
        while records:
            record = next(iter(records.values()))
            last = max(record.failures[-1] if record.failures else -math.inf, record.forgiven)
            if last > now - self.window or record.banned_until > now:
                return
            records.popitem(last=False)
