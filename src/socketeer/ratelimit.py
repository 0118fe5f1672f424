"""A token bucket: how many events (chat lines, UDP replies) are allowed, and how fast.

Time is an argument, never read here: the caller passes ``now`` (seconds on
any clock that does not jump forward), so tests run instantly.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows ``rate`` events a second on average and bursts of up to ``burst``.

    The bucket starts full.  Each allowed event takes one token; tokens come
    back at ``rate`` a second up to ``burst``.  A ``rate`` of 0 allows
    everything.  A clock that steps backwards refills nothing.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    @property
    def tokens(self) -> float:
        """Tokens left after the last :meth:`allow`."""
        return self._tokens

    def allow(self, now: float) -> bool:
        """Take a token if there is one at ``now``; say whether there was."""
        if not self.rate:
            return True
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._last = max(self._last, now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
