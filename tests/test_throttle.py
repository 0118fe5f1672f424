"""AuthThrottle without a clock: delays that grow, bans that lift, bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socketeer.throttle import AuthThrottle, Failure

ADDRESS, OTHER = "192.0.2.1", "198.51.100.7"


def test_each_failure_doubles_the_delay_up_to_the_cap() -> None:
    throttle = AuthThrottle(max_failures=10, first_delay=0.1, max_delay=1.0)
    delays = [throttle.failed(ADDRESS, now=float(t)).delay for t in range(8)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0])


def test_the_first_attempt_is_neither_delayed_nor_banned() -> None:
    throttle = AuthThrottle()
    assert throttle.ban_remaining(ADDRESS, now=0.0) == 0.0
    assert len(throttle) == 0


def test_the_nth_failure_in_the_window_bans_the_address() -> None:
    throttle = AuthThrottle(max_failures=3, window=60.0, ban=300.0)
    assert throttle.failed(ADDRESS, now=0.0) == Failure(0.1, 0.0, 1)
    assert throttle.failed(ADDRESS, now=10.0).banned_for == 0.0
    assert throttle.ban_remaining(ADDRESS, now=10.0) == 0.0
    third = throttle.failed(ADDRESS, now=20.0)
    assert (third.banned_for, third.failures) == (300.0, 3)
    assert third.delay == pytest.approx(0.4)  # the failed attempt is still answered late
    assert throttle.ban_remaining(ADDRESS, now=20.0) == 300.0
    assert throttle.ban_remaining(ADDRESS, now=319.5) == pytest.approx(0.5)
    assert throttle.ban_remaining(OTHER, now=20.0) == 0.0  # only that address


def test_a_ban_expires_and_the_address_starts_afresh() -> None:
    throttle = AuthThrottle(max_failures=2, window=60.0, ban=100.0)
    throttle.failed(ADDRESS, now=0.0)
    throttle.failed(ADDRESS, now=1.0)
    assert throttle.ban_remaining(ADDRESS, now=100.9) > 0
    assert throttle.ban_remaining(ADDRESS, now=101.0) == 0.0
    assert throttle.failed(ADDRESS, now=102.0) == Failure(0.1, 0.0, 1)


def test_failures_older_than_the_window_do_not_count() -> None:
    throttle = AuthThrottle(max_failures=3, window=60.0)
    throttle.failed(ADDRESS, now=0.0)
    throttle.failed(ADDRESS, now=30.0)
    late = throttle.failed(ADDRESS, now=61.0)  # the first has left the window
    assert (late.failures, late.banned_for) == (2, 0.0)
    assert late.delay == pytest.approx(0.2)
    assert throttle.failed(ADDRESS, now=62.0).banned_for > 0


def test_a_success_forgets_the_failures() -> None:
    throttle = AuthThrottle(max_failures=3)
    throttle.failed(ADDRESS, now=0.0)
    throttle.failed(ADDRESS, now=1.0)
    throttle.succeeded(ADDRESS, now=2.0)
    after = throttle.failed(ADDRESS, now=3.0)
    assert (after.failures, after.banned_for) == (1, 0.0)
    assert after.delay == pytest.approx(0.1)


def test_a_success_forgets_failures_once_a_window() -> None:
    """One account's right password between guesses at others' does not keep the ban away."""
    throttle = AuthThrottle(max_failures=6, window=600.0)
    for now in range(5):
        throttle.failed(ADDRESS, now=float(now))
    throttle.succeeded(ADDRESS, now=5.0)  # forgotten: a typo or two, then the right one
    for now in range(6, 11):
        assert throttle.failed(ADDRESS, now=float(now)).banned_for == 0.0
    throttle.succeeded(ADDRESS, now=11.0)  # not again in this window
    assert throttle.failed(ADDRESS, now=12.0).banned_for > 0
    assert throttle.ban_remaining(ADDRESS, now=12.0) > 0


def test_a_success_forgets_again_once_the_window_has_passed() -> None:
    throttle = AuthThrottle(max_failures=3, window=60.0)
    throttle.failed(ADDRESS, now=0.0)
    throttle.succeeded(ADDRESS, now=1.0)
    throttle.failed(ADDRESS, now=70.0)
    throttle.failed(ADDRESS, now=71.0)
    throttle.succeeded(ADDRESS, now=72.0)
    assert throttle.failed(ADDRESS, now=73.0).failures == 1
    assert throttle.ban_remaining("x", now=200.0) == 0.0
    assert len(throttle) == 0  # forgotten once nothing of it counts any more


def test_a_success_does_not_lift_a_ban() -> None:
    throttle = AuthThrottle(max_failures=1, ban=10.0)
    throttle.failed(ADDRESS, now=0.0)
    throttle.succeeded(ADDRESS, now=1.0)
    assert throttle.ban_remaining(ADDRESS, now=1.0) == 9.0


def test_expired_addresses_are_forgotten() -> None:
    throttle = AuthThrottle(max_failures=2, window=60.0, ban=100.0)
    throttle.failed("a", now=0.0)
    throttle.failed("b", now=0.0)
    throttle.failed("b", now=0.0)  # banned until 100
    throttle.failed("c", now=50.0)
    assert len(throttle) == 3
    assert throttle.ban_remaining("x", now=70.0) == 0.0
    assert len(throttle) == 2  # "a" is old news; "b" is banned
    throttle.ban_remaining("x", now=150.0)
    assert len(throttle) == 0


@settings(max_examples=50)
@given(addresses=st.lists(st.integers(0, 10_000), max_size=300))
def test_memory_is_bounded_by_the_cap(addresses: list[int]) -> None:
    throttle = AuthThrottle(max_tracked=50, max_failures=3)
    for now, address in enumerate(addresses):
        throttle.failed(str(address), now=float(now))
        assert len(throttle) <= 50


def test_past_the_cap_the_least_recently_failing_address_is_forgotten() -> None:
    throttle = AuthThrottle(max_tracked=2, max_failures=2)
    throttle.failed("a", now=0.0)
    throttle.failed("b", now=1.0)
    throttle.failed("a", now=2.0)  # "a" is banned, and now the most recent
    throttle.failed("c", now=3.0)  # "b" goes
    assert len(throttle) == 2
    assert throttle.ban_remaining("a", now=3.0) > 0
    assert throttle.failed("b", now=4.0).failures == 1


def test_many_failures_never_overflow_the_delay() -> None:
    throttle = AuthThrottle(max_failures=5_000, window=1e9, max_delay=5.0)
    for t in range(2_000):
        assert throttle.failed(ADDRESS, now=float(t)).delay <= 5.0


@pytest.mark.parametrize(
    "options",
    [{"max_failures": 0}, {"max_tracked": 0}, {"window": -1.0}, {"first_delay": -0.1}],
)
def test_nonsense_settings_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"at least 1|negative"):
        AuthThrottle(**options)  # type: ignore[arg-type]
