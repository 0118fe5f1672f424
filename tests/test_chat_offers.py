"""The offer desk without I/O: limits, expiry by the clock passed in, the drop box's rights."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from socketeer.accounts import Right
from socketeer.services.chat.commands import Accept, Decline, Invalid, Offer, parse_command
from socketeer.services.chat.offers import OfferDesk, OfferLimits


def desk(**limits: object) -> OfferDesk:
    counter = itertools.count()
    return OfferDesk(OfferLimits(**limits), token=lambda: f"{next(counter):032x}")  # type: ignore[arg-type]


def codes(notes: Sequence[tuple[str, object]]) -> list[tuple[str, str]]:
    return [(key, getattr(notice, "code", "")) for key, notice in notes]


def test_the_commands_parse() -> None:
    assert parse_command("/offer bob 12 my notes.txt") == Offer("bob", 12, "my notes.txt")
    assert parse_command("/accept") == Accept(None)
    assert parse_command("/decline 3") == Decline("3")
    assert parse_command("/offer bob twelve x") == Invalid("usage: /offer NAME SIZE FILE")
    assert parse_command("/accept 1 2") == Invalid("usage: /accept [ID]")


@given(st.text(max_size=40))
def test_parsing_an_offer_never_raises(rest: str) -> None:
    parse_command(f"/offer {rest}")


def test_the_pending_offers_of_a_recipient_and_of_all_are_bounded() -> None:
    offers = desk(max_pending=2, max_total=100)
    assert codes(offers.offer("a", "a", "bob", "bob", 10, "x", 0, 0)) == [("a", "offer-upload")]
    assert codes(offers.offer("c", "c", "bob", "bob", 10, "y", 0, 0)) == [("c", "offer-upload")]
    assert codes(offers.offer("d", "d", "bob", "bob", 10, "z", 0, 0)) == [("d", "too-many-offers")]
    assert codes(offers.offer("d", "d", "eve", "eve", 81, "z", 0, 0)) == [("d", "drop-box-full")]
    assert offers.reserved == 20
    assert [kind for kind, _ in offers.take_jobs()] == ["prepare", "prepare"]


def test_an_offer_expires_by_the_clock_and_its_file_is_to_be_deleted() -> None:
    offers = desk(ttl=60)
    offers.offer("alice", "alice", "bob", "bob", 5, "x", 100.0, 0)
    ((_, offer),) = offers.take_jobs()
    assert offers.expire(159.9, 0) == []
    offers.offered("alice", offer.id, 0)
    assert [kind for kind, _ in offers.take_jobs()] == ["check"]
    told = offers.checked(offer, "ab" * 32, 5, 150.0, 0)  # ready: a new minute starts
    assert codes(told) == [("bob", "offer"), ("alice", "offer-sent")]
    assert offers.expire(209.9, 0) == []
    assert codes(offers.expire(210.0, 0)) == [("alice", "offer-expired"), ("bob", "offer-expired")]
    assert offers.take_jobs() == [("remove", offer)]
    assert offers.reserved == 0
    assert len(offers) == 0


def test_the_drop_box_rights_follow_the_offer() -> None:
    offers = desk()
    offers.offer("alice", "alice", "bob", "bob", 5, "x", 0, 0)
    ((_, offer),) = offers.take_jobs()
    accounts = offers.accounts
    sender = accounts.authenticate(offer.user, offer.token)
    assert sender is offer.account
    assert accounts.authenticate(offer.user, "wrong") is None
    path = (offer.secret, "x")
    assert accounts.rights(sender, path) == Right.WRITE
    assert accounts.rights(None, path) == Right.NONE
    assert accounts.rights(sender, (offer.secret,)) == Right.NONE
    assert accounts.rights(sender, (offer.secret, "y")) == Right.NONE
    assert accounts.upload_refusal(sender, path, 6) == f"offer {offer.id} is for 5 bytes, not 6"
    offers.checked(offer, "ab" * 32, 5, 0, 0)
    assert accounts.rights(None, path) == Right.READ  # anyone who knows the path
    assert accounts.authenticate(offer.user, offer.token) is None  # no more writing
    assert accounts.ways(None, ()) == frozenset()


def test_the_sender_is_told_each_step_once_with_the_offers_number() -> None:
    offers = desk()
    offers.offer("alice", "alice", "bob", "bob", 5, "x", 0, 0)
    ((_, offer),) = offers.take_jobs()
    told = offers.checked(offer, "ab" * 32, 5, 0, 0)
    assert told[1][1].text == "offer 1: bob is offered x; waiting for an answer"
    taken = offers.accept("bob", None, 0)
    assert taken[1][1].text == "offer 1: bob accepted x"
