"""The chat client's two faces: a prompt_toolkit terminal, and plain lines for pipes.

In a terminal, incoming lines appear above an input line that is never
overwritten, with a colour per nickname and the history of what was typed
(up and down arrows).  Ctrl-D or ``/quit`` leaves (exit 0), Ctrl-C too (exit
130).  When stdin or stdout is not a terminal it reads lines from stdin and
prints the lines it receives, plainly.  Imported only when ``socketeer chat``
runs, so other commands start without prompt_toolkit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.styles import Style

from ..errors import NetworkError
from ..services.chat import ChatClient, ChatEvent, ChatLine, Connected, Disconnected
from ..services.chat.commands import Quit, parse_command
from ..services.chat.transfers import Transfers

__all__ = ["QUIT_WAIT", "run_plain", "run_terminal"]

#: Seconds a piped client waits, after its /quit, for the server to close the connection.
QUIT_WAIT = 5.0


class _ConnectionLost(NetworkError):
    """The connection dropped and was not to be retried."""


async def _show_events(
    client: ChatClient, show: Callable[[ChatEvent], None], transfers: Transfers
) -> None:
    async for event in client.events():
        if isinstance(event, ChatLine) and not transfers.follow(event):
            continue
        show(event)
        if isinstance(event, Disconnected) and event.retry_in is None:
            raise _ConnectionLost(f"connection lost: {event.reason}")


async def _send(
    client: ChatClient, text: str, status: Callable[[str], None], transfers: Transfers
) -> bool:
    """Send one typed line (``/send`` offers a file); False once it was a /quit."""
    if await transfers.command(text):
        return True
    if isinstance(parse_command(text), Quit):
        await client.close(text.partition(" ")[2].strip())
        return False
    try:
        await client.send(text)
    except NetworkError:
        status("-- not connected; not sent")
    return True


# --- in a terminal ------------------------------------------------------------------------

STYLE = Style.from_dict(
    {
        "time": "#888888",
        "place": "ansicyan",
        "private": "ansimagenta bold",
        "notice": "ansiyellow",
        "error": "ansired bold",
        "action": "italic",
        "lost": "ansired",
        "back": "ansigreen",
        "prompt": "bold",
        "me": "bold underline",
    }
)
NICK_COLOURS = (
    "ansigreen",
    "ansiyellow",
    "ansiblue",
    "ansimagenta",
    "ansicyan",
    "ansired",
    "ansibrightgreen",
    "ansibrightblue",
    "ansibrightmagenta",
    "ansibrightcyan",
    "ansibrightred",
    "ansibrightyellow",
)


def nick_colour(nick: str) -> str:
    """The colour a nickname is always shown in (the same for everyone who runs the client)."""
    return NICK_COLOURS[zlib.crc32(nick.casefold().encode()) % len(NICK_COLOURS)]


def formatted(event: ChatEvent, me: str) -> FormattedText:
    """How ``event`` looks in the terminal: the line as sent, in colour."""
    if isinstance(event, Connected):
        return FormattedText([("class:back", f"-- connected to {event.endpoint}")])
    if isinstance(event, Disconnected):
        later = "" if event.retry_in is None else f"; reconnecting in {event.retry_in:.1f} s"
        return FormattedText([("class:lost", f"-- connection lost: {event.reason}{later}")])
    if not event.time:  # not in the chat's format: shown as it came
        return FormattedText([("", event.text)])
    place_style = "class:private" if event.private else "class:place"
    parts = [("class:time", event.time), ("", " "), (place_style, event.place), ("", " ")]
    nick = event.nick or ""
    colour = nick_colour(nick) + (" class:me" if nick == me else "")
    if event.kind == "said":
        parts += [(colour, f"<{nick}>"), ("", f" {event.text}")]
    elif event.kind == "action":
        parts += [("class:action", "* "), (colour, nick), ("class:action", f" {event.text}")]
    else:
        style = "class:error" if event.error else "class:notice"
        parts += [(style, f"-!- {event.text}")]
    return FormattedText(parts)


async def run_terminal(client: ChatClient, downloads: Path = Path()) -> int:
    """The interactive client; files accepted go into ``downloads``; returns the exit status."""
    await client.connect()
    transfers = Transfers(client.send, show_status, downloads)
    # What was typed is erased once sent: the server's copy shows it, once.
    session: PromptSession[str] = PromptSession(history=InMemoryHistory(), erase_when_done=True)

    def show(event: ChatEvent) -> None:
        print_formatted_text(formatted(event, client.nick), style=STYLE)

    def prompt() -> FormattedText:
        return FormattedText([("class:prompt", f"{client.room or '-'} {client.nick}> ")])

    shower = asyncio.create_task(_show_events(client, show, transfers))
    shower.add_done_callback(lambda _: session.app.exit() if session.app.is_running else None)
    code = 0
    try:
        while not shower.done():
            try:
                text = await session.prompt_async(prompt, style=STYLE)
            except EOFError:
                break
            except KeyboardInterrupt:
                code = 130
                break
            if text is None:  # the connection is gone for good
                break
            if text.strip() and not await _send(client, text, show_status, transfers):
                break
    finally:
        await transfers.close()
        await client.close()
        await _finish(shower)
    return code


def show_status(text: str) -> None:
    """A line of the client's own, above the input line."""
    print_formatted_text(FormattedText([("class:lost", text)]), style=STYLE)


async def _finish(shower: asyncio.Task[None]) -> None:
    """Stop showing events; a connection lost for good is the command's error."""
    if not shower.done():
        shower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await shower


# --- plain: pipes and scripts -------------------------------------------------------------


async def _stdin_lines() -> AsyncIterator[str]:
    """Lines typed or piped on stdin, until its end (a thread does the blocking reads)."""
    running = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)

    def reader() -> None:
        try:
            with os.fdopen(os.dup(sys.stdin.fileno()), "rb") as stdin:
                for raw in stdin:
                    asyncio.run_coroutine_threadsafe(lines.put(raw), running).result()
            asyncio.run_coroutine_threadsafe(lines.put(b""), running).result()
        except Exception:  # the loop is gone: the command is over
            return

    threading.Thread(target=reader, name="stdin", daemon=True).start()
    while raw := await lines.get():
        yield raw.decode("utf-8", "replace").rstrip("\r\n")


async def run_plain(client: ChatClient, downloads: Path = Path()) -> int:
    """Lines from stdin to the chat, lines from the chat to stdout; returns the exit status.

    Files accepted go into ``downloads``; at the end of stdin, transfers under
    way are finished before the client says goodbye.
    """
    await client.connect()

    def show(event: ChatEvent) -> None:
        if isinstance(event, ChatLine):
            sys.stdout.write(f"{event}\n")
            sys.stdout.flush()
        else:
            status(str(formatted(event, client.nick)[0][1]))

    def status(text: str) -> None:
        sys.stderr.write(f"{text}\n")
        sys.stderr.flush()

    transfers = Transfers(client.send, status, downloads)

    async def pump() -> None:
        message = ""
        if not await client.wait_named(QUIT_WAIT):  # else lines would be taken as nicknames
            status("-- the server accepted no nickname; not sending")
            await client.quit()
            await asyncio.wait({shower}, timeout=QUIT_WAIT)
            return
        async for text in _stdin_lines():
            if isinstance(parse_command(text), Quit):
                message = text.partition(" ")[2].strip()
                break
            if text.strip():
                await _send(client, text, status, transfers)
        if transfers.used:
            await transfers.settle(QUIT_WAIT)
        await client.quit(message)  # and show what the server still says, up to its "bye"
        await asyncio.wait({shower}, timeout=QUIT_WAIT)

    shower = asyncio.create_task(_show_events(client, show, transfers))
    pumper = asyncio.create_task(pump())
    try:
        await asyncio.wait({shower, pumper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        pumper.cancel()
        await transfers.close()
        await client.close()
        await _finish(shower)
    return 0
