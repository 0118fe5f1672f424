"""Re-encoding a byte stream from one text encoding to another, chunk by chunk.

``socketeer connect --encoding gbk`` shows a gbk peer's text in the
terminal's encoding and sends what is typed as gbk.  Chunks may end in the
middle of a character; the rest of it is kept for the next chunk.  Bytes that
do not decode never raise: they pass through unchanged where the target
encoding allows it (``surrogateescape``), else they become U+FFFD or ``?``.
"""

from __future__ import annotations

import codecs

from .service import TextCodec

__all__ = ["Transcoder"]

_ERRORS = "socketeer.escape"


def _escape(exc: UnicodeError) -> tuple[str, int]:
    """Decoding error handler: bytes from 128 up as surrogate escapes, lower ones as U+FFFD.

    ``surrogateescape`` alone raises on a bad byte below 128 (an ISO-2022
    escape sequence broken off, say); this one never does.
    """
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(chr(0xDC00 + b) if b >= 128 else "\ufffd" for b in bad), exc.end


codecs.register_error(_ERRORS, _escape)


class Transcoder:
    """Bytes in ``source`` encoding in, the same text in ``target`` encoding out.

    Both names are checked like :class:`~socketeer.service.TextCodec` checks
    them (:class:`LookupError` for an unknown encoding or one that does not
    write ASCII as ASCII).  When both name the same codec, bytes pass through
    untouched.
    """

    def __init__(self, source: str, target: str) -> None:
        self.source = TextCodec(source).encoding
        self._target = TextCodec(target)
        self.identity = codecs.lookup(source).name == codecs.lookup(target).name
        self._decoder = codecs.getincrementaldecoder(source)(errors=_ERRORS)

    def feed(self, data: bytes, *, final: bool = False) -> bytes:
        """Re-encode ``data``; an incomplete character at its end waits for the next call.

        ``final`` marks the end of the stream (or of one datagram): whatever
        is left undecoded is written out as it is.
        """
        if self.identity:
            return data
        decoder = self._decoder
        held = decoder.getstate()[0]
        try:
            text = decoder.decode(data, final)
        except UnicodeError:
            # A stateful codec's few bytes of pending escape sequence overflowed (a
            # hostile or broken peer): what was held and ``data`` are decoded as they
            # are, bad bytes escaped, and the decoder starts afresh.
            decoder.reset()
            text = (held + data).decode(self.source, _ERRORS)
        return self._target.encode(text)

    def end(self) -> bytes:
        """The end of the stream: what is still held back from an unfinished character."""
        return self.feed(b"", final=True)
