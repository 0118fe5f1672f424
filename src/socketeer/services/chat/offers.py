"""Files offered between chat members: the offers, their limits, and who may touch their bytes.

The bytes of an offered file never travel through the chat's lines.  They
go through a drop box: a files share (:mod:`socketeer.services.files`) that
the chat server runs beside the chat (``serve chat --files ENDPOINT``).

1. The sender's client says ``/offer NICK SIZE NAME``.  The desk checks that
   NICK is online and the limits, and answers with where to upload:
   ``SECRET/NAME`` on the drop box, as the user ``offer-ID`` whose password
   is a token made for this offer alone.
2. The client uploads it (resumable and verified, as ``socketeer put`` does),
   then says ``/offered ID``.  The I/O layer checks that the whole file is
   there and hashes it; then the recipient is told who offers what, its
   size and SHA-256, and the command line that fetches it.
3. ``/accept [ID]`` answers with where to download it (the terminal client
   fetches it, resumable and verified, and says ``/received ID``);
   ``/decline [ID]`` refuses it.  Received, declined and expired offers'
   files are deleted.

``SECRET`` is 128 random bits: knowing the path is what allows reading the
file (anyone may read a ready offer's file, nobody may list the drop box),
so the recipient can hand the command line to another program.  Only the
offer's user may write, and only its one file, of the size it announced.

Sans-IO: the time comes in as ``now`` (monotonic, for expiry) and ``wall``
(for the events' times); what needs the disk is handed to the I/O layer as
jobs (:meth:`OfferDesk.take_jobs`).  Notices are addressed to nickname keys
(:func:`.names.name_key`); whoever is not online then misses them.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ...accounts import Account, Accounts, Alias, Right
from ...passwords import PasswordHash
from ...visible import visible
from .events import Notice
from .lines import NOWHERE

__all__ = [
    "DEFAULT_MAX_OFFERS",
    "DEFAULT_MAX_OFFERS_TOTAL",
    "DEFAULT_MAX_OFFER_SIZE",
    "DEFAULT_OFFER_TTL",
    "Job",
    "Note",
    "Offer",
    "OfferAccounts",
    "OfferDesk",
    "OfferLimits",
    "name_problem",
    "size_text",
]

#: The largest file one offer may hold unless told otherwise.
DEFAULT_MAX_OFFER_SIZE = 100 * 1024 * 1024
#: Offers one member may have pending, as sender or as recipient.
DEFAULT_MAX_OFFERS = 5
#: Bytes all pending offers may hold together.
DEFAULT_MAX_OFFERS_TOTAL = 1024 * 1024 * 1024
#: Seconds an offer lasts (to be uploaded, then to be fetched).
DEFAULT_OFFER_TTL = 3600.0
#: The longest file name an offer may carry, in UTF-8 bytes (a file system's limit).
MAX_NAME_BYTES = 255

#: A notice for the member whose nickname has this key.
Note = tuple[str, Notice]
#: What the I/O layer is to do on the disk: make the offer's directory (``prepare``),
#: check that its file has arrived whole and hash it (``check``), delete it (``remove``).
Job = tuple[Literal["prepare", "check", "remove"], "Offer"]

# No password derives this: the offers' accounts are logged in by their tokens.
_NO_PASSWORD = PasswordHash(1, 1, 1, bytes(8), bytes(16))


def size_text(size: int) -> str:
    """``1.5 MiB``, ``512 bytes``."""
    if size < 1024:
        return f"{size} byte{'' if size == 1 else 's'}"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an offered file's name, or None."""
    if not name or name in (".", ".."):
        return "a file needs a name"
    if "/" in name or "\\" in name:
        return "a file name holds no / or \\"
    if name.startswith("."):
        return "a file name may not start with a dot"
    if visible(name) != name:
        return "a file name holds no control or invisible characters"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"a file name is at most {MAX_NAME_BYTES} bytes"
    return None


@dataclass(frozen=True)
class OfferLimits:
    """How big offers may be, how many, for how long.

    ``max_size`` bytes per offer; ``max_pending`` offers one member may have
    pending as sender, and as many as recipient; ``max_total`` bytes for all
    pending offers together; ``ttl`` seconds to upload an offer, and again
    to fetch it once it is ready.
    """

    max_size: int = DEFAULT_MAX_OFFER_SIZE
    max_pending: int = DEFAULT_MAX_OFFERS
    max_total: int = DEFAULT_MAX_OFFERS_TOTAL
    ttl: float = DEFAULT_OFFER_TTL

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.max_pending < 1 or self.max_total < 1 or self.ttl <= 0:
            raise ValueError("offer limits must be positive")


@dataclass(eq=False)
class Offer:
    """One file offered by ``sender`` to ``recipient`` (nicknames as shown, and their keys)."""

    id: str
    secret: str
    token: str = field(repr=False)
    sender: str
    sender_key: str
    recipient: str
    recipient_key: str
    name: str
    size: int
    deadline: float
    #: ``uploading`` until its file has arrived whole, then ``ready``.
    state: Literal["uploading", "ready"] = "uploading"
    sha256: str = ""
    accepted: bool = False
    #: The account the sender uploads as.
    account: Account = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.account = Account(self.user, _NO_PASSWORD)

    @property
    def user(self) -> str:
        """The user name the sender uploads as."""
        return f"offer-{self.id}"

    @property
    def path(self) -> str:
        """Where the file is in the drop box."""
        return f"{self.secret}/{self.name}"


class OfferDesk:
    """Every pending offer of one chat, and the limits on them.

    ``files`` is the drop box's address as members are to use it
    (``HOST:PORT``), set by the I/O layer once it listens; ``token`` makes
    the offers' secrets and upload tokens.  ``prefix`` opens every offer's
    id: on a node of a larger chat, the node's name and ``-``, so that ids
    are unique across the chat and name the node holding the file.
    """

    def __init__(
        self,
        limits: OfferLimits | None = None,
        *,
        token: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        self.limits = limits or OfferLimits()
        self.files = ""
        self.prefix = ""
        self._token = token
        self._offers: dict[str, Offer] = {}
        self._by_secret: dict[str, Offer] = {}
        self._by_user: dict[str, Offer] = {}
        self._next = 1
        self._reserved = 0
        self._jobs: list[Job] = []
        #: Who may read and write what in the drop box.
        self.accounts = OfferAccounts(self)

    # looking up -------------------------------------------------------------------------

    @property
    def reserved(self) -> int:
        """Bytes the pending offers may hold."""
        return self._reserved

    def __len__(self) -> int:
        return len(self._offers)

    def by_secret(self, secret: str) -> Offer | None:
        """The offer whose directory is ``secret``, if it is pending."""
        return self._by_secret.get(secret)

    def by_user(self, user: str) -> Offer | None:
        """The offer uploaded as ``user``, if it is pending."""
        return self._by_user.get(user)

    def take_jobs(self) -> list[Job]:
        """What is to be done on the disk since the last call, in order."""
        jobs, self._jobs = self._jobs, []
        return jobs

    # commands ---------------------------------------------------------------------------

    def offer(
        self,
        sender: str,
        sender_key: str,
        recipient: str,
        recipient_key: str,
        size: int,
        name: str,
        now: float,
        wall: float,
    ) -> list[Note]:
        """``/offer``: ``sender`` would send ``recipient`` (who is online) ``size`` bytes."""
        limits = self.limits
        problem = name_problem(name)
        shown = visible(name)
        if problem:
            return _error(sender_key, wall, "offer-invalid", f'"{shown}": {problem}')
        if size > limits.max_size:
            text = (
                f"{shown} is {size_text(size)}; an offer may hold at most"
                f" {size_text(limits.max_size)}"
            )
            return _error(sender_key, wall, "offer-too-large", text, limit=limits.max_size)
        for key, whose in ((sender_key, "you have"), (recipient_key, f"{recipient} has")):
            count = sum(key in (o.sender_key, o.recipient_key) for o in self._offers.values())
            if count >= limits.max_pending:
                text = (
                    f"{whose} {limits.max_pending} offers pending already;"
                    " wait until one is fetched, declined or expired"
                )
                return _error(sender_key, wall, "too-many-offers", text, limit=limits.max_pending)
        if self._reserved + size > limits.max_total:
            text = "the drop box is full; try again later, or offer a smaller file"
            return _error(sender_key, wall, "drop-box-full", text)
        offer = Offer(
            f"{self.prefix}{self._next}",
            self._token(),
            self._token(),
            sender,
            sender_key,
            recipient,
            recipient_key,
            name,
            size,
            now + limits.ttl,
        )
        self._next += 1
        self._offers[offer.id] = offer
        self._by_secret[offer.secret] = offer
        self._by_user[offer.user] = offer
        self._reserved += size
        self._jobs.append(("prepare", offer))
        command = (
            f"SOCKETEER_PASSWORD={offer.token} socketeer put FILE {self.files}"
            f" {offer.path} --user {offer.user}"
        )
        text = (
            f"offer {offer.id}: upload {shown} ({size_text(size)}) for {recipient},"
            f" then /offered {offer.id}; with socketeer: {command}"
        )
        data = {
            "id": offer.id,
            "to": recipient,
            "name": name,
            "size": size,
            "files": self.files,
            "path": offer.path,
            "user": offer.user,
            "token": offer.token,
        }
        return [(sender_key, Notice(wall, NOWHERE, "offer-upload", text, data))]

    def offered(self, sender_key: str, offer_id: str, wall: float) -> list[Note]:
        """``/offered ID``: the sender says the file is uploaded; the disk is to check it."""
        offer = self._offers.get(offer_id)
        if offer is None or offer.sender_key != sender_key:
            return _unknown(sender_key, wall, offer_id, "from you")
        if offer.state == "ready":
            return _error(sender_key, wall, "offer-ready", f"offer {offer.id} is offered already")
        self._jobs.append(("check", offer))
        return []

    def checked(
        self, offer: Offer, sha256: str | None, have: int, now: float, wall: float
    ) -> list[Note]:
        """The disk's answer to a ``check``: the file's SHA-256, or None and how much is there."""
        if self._offers.get(offer.id) is not offer or offer.state != "uploading":
            return []
        if sha256 is None:
            text = (
                f"{visible(offer.name)} has not arrived whole ({have} of {offer.size} bytes);"
                f" upload it, then /offered {offer.id}"
            )
            return _error(offer.sender_key, wall, "offer-incomplete", text, id=offer.id)
        offer.state = "ready"
        offer.sha256 = sha256
        offer.deadline = now + self.limits.ttl
        shown = visible(offer.name)
        minutes = max(1, round(self.limits.ttl / 60))
        text = (
            f"{offer.sender} offers you {shown} ({size_text(offer.size)}):"
            f" /accept {offer.id} or /decline {offer.id} (within {minutes} min);"
            f" or fetch it with: {self._get_command(offer)}"
        )
        told = [
            (offer.recipient_key, Notice(wall, NOWHERE, "offer", text, self._facts(offer))),
        ]
        sent = f"{offer.recipient} is offered {shown}; waiting for an answer"
        told.append(_note(offer.sender_key, wall, "offer-sent", sent, offer))
        return told

    def accept(self, recipient_key: str, offer_id: str | None, wall: float) -> list[Note]:
        """``/accept [ID]``: the recipient is told where to fetch the file; the sender that it
        was accepted."""
        offer = self._for_recipient(recipient_key, offer_id)
        if offer is None:
            return _unknown(recipient_key, wall, offer_id, "for you")
        shown = visible(offer.name)
        text = f"offer {offer.id}: fetching {shown}: {self._get_command(offer)}"
        told = [(recipient_key, Notice(wall, NOWHERE, "offer-accepted", text, self._facts(offer)))]
        if not offer.accepted:
            offer.accepted = True
            said = f"{offer.recipient} accepted {shown}"
            told.append(_note(offer.sender_key, wall, "offer-taken", said, offer))
        return told

    def decline(self, recipient_key: str, offer_id: str | None, wall: float) -> list[Note]:
        """``/decline [ID]``: the file is deleted, and the sender told."""
        offer = self._for_recipient(recipient_key, offer_id)
        if offer is None:
            return _unknown(recipient_key, wall, offer_id, "for you")
        self._remove(offer)
        shown = visible(offer.name)
        theirs = f"{offer.recipient} declined {shown}"
        return [
            _note(recipient_key, wall, "offer-declined", f"declined {shown}", offer),
            _note(offer.sender_key, wall, "offer-declined", theirs, offer),
        ]

    def received(self, recipient_key: str, offer_id: str, wall: float) -> list[Note]:
        """``/received ID``: the recipient has the file; it is deleted, and the sender told."""
        offer = self._for_recipient(recipient_key, offer_id)
        if offer is None:
            return _unknown(recipient_key, wall, offer_id, "for you")
        self._remove(offer)
        shown = visible(offer.name)
        mine = f"{shown} is yours; it is gone from the drop box"
        theirs = f"{offer.recipient} received {shown}"
        return [
            _note(recipient_key, wall, "offer-received", mine, offer),
            _note(offer.sender_key, wall, "offer-received", theirs, offer),
        ]

    def expire(self, now: float, wall: float) -> list[Note]:
        """Forget the offers past their deadline; their files are to be deleted."""
        told: list[Note] = []
        for offer in [o for o in self._offers.values() if o.deadline <= now]:
            self._remove(offer)
            shown = visible(offer.name)
            if offer.state == "uploading":
                text = f"{shown} for {offer.recipient} expired before it was offered"
                told.append(_note(offer.sender_key, wall, "offer-expired", text, offer))
                continue
            for key, text in (
                (offer.sender_key, f"{shown} for {offer.recipient} expired"),
                (offer.recipient_key, f"{shown} from {offer.sender} expired"),
            ):
                told.append(_note(key, wall, "offer-expired", text, offer))
        return told

    # inside -----------------------------------------------------------------------------

    def _for_recipient(self, key: str, offer_id: str | None) -> Offer | None:
        """The ready offer ``offer_id`` to ``key``, or (None) the latest ready one to it."""
        if offer_id is not None:
            offer = self._offers.get(offer_id)
            ok = offer is not None and offer.recipient_key == key and offer.state == "ready"
            return offer if ok else None
        ready = [o for o in self._offers.values() if o.recipient_key == key and o.state == "ready"]
        return ready[-1] if ready else None

    def _remove(self, offer: Offer) -> None:
        del self._offers[offer.id]
        del self._by_secret[offer.secret]
        del self._by_user[offer.user]
        self._reserved -= offer.size
        self._jobs.append(("remove", offer))

    def _get_command(self, offer: Offer) -> str:
        return f"socketeer get {self.files} {offer.path}"

    def _facts(self, offer: Offer) -> dict[str, object]:
        return {
            "id": offer.id,
            "from": offer.sender,
            "name": offer.name,
            "size": offer.size,
            "sha256": offer.sha256,
            "files": self.files,
            "path": offer.path,
        }


def _note(key: str, wall: float, code: str, text: str, offer: Offer) -> Note:
    """A notice about ``offer``: its text opens with the offer's number."""
    return key, Notice(wall, NOWHERE, code, f"offer {offer.id}: {text}", {"id": offer.id})


def _error(key: str, wall: float, code: str, text: str, **data: object) -> list[Note]:
    return [(key, Notice(wall, NOWHERE, code, text, data, error=True))]


def _unknown(key: str, wall: float, offer_id: str | None, which: str) -> list[Note]:
    if offer_id is None:
        return _error(key, wall, "no-offer", f"there is no offer {which}")
    text = f"there is no offer {visible(offer_id[:24])} {which}"
    return _error(key, wall, "no-offer", text, id=visible(offer_id[:24]))


class OfferAccounts(Accounts):
    """The drop box's rights, from the pending offers.

    Anyone may read a ready offer's file (its path is the secret); an offer's
    user, logged in with its token, may write that one file while it is
    being uploaded, at the size it announced.  Nothing else: no listing, no
    deleting, no directories.  Its methods run in the files service's
    threads: they only look offers up.
    """

    def __init__(self, desk: OfferDesk) -> None:
        super().__init__({})
        self._desk = desk

    def find(self, name: str) -> Account | None:
        offer = self._desk.by_user(name)
        return offer.account if offer is not None and offer.state == "uploading" else None

    def is_registered(self, name: str) -> bool:
        return self.find(name) is not None

    def authenticate(self, name: str, password: str) -> Account | None:
        offer = self._desk.by_user(name)
        if offer is None or offer.state != "uploading":
            return None
        return offer.account if hmac.compare_digest(password, offer.token) else None

    def rights(
        self, account: Account | None, names: tuple[str, ...], alias: Alias | None = None
    ) -> Right:
        offer = self._desk.by_secret(names[0]) if len(names) == 2 else None
        if offer is None or names[1] != offer.name:
            return Right.NONE
        if offer.state == "ready":
            return Right.READ
        return Right.WRITE if account is offer.account else Right.NONE

    def tree_rights(self, account: Account | None, names: tuple[str, ...]) -> Right:
        return self.rights(account, names)

    def ways(self, account: Account | None, names: tuple[str, ...]) -> frozenset[str]:
        return frozenset()

    def may_write(self, account: Account | None) -> bool:
        return account is not None

    def upload_refusal(
        self, account: Account | None, names: tuple[str, ...], size: int
    ) -> str | None:
        offer = self._desk.by_secret(names[0]) if names else None
        if offer is not None and size != offer.size:
            return f"offer {offer.id} is for {offer.size} bytes, not {size}"
        return None
