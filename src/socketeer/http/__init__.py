"""HTTP on the services' own ports: browsers, curl and wget beside the native protocols.

A connection whose first line is an HTTP/1.x request line (:mod:`.detect`)
is served as HTTP by :class:`~.connection.HttpConnection`, which drives the
sans-IO ``h11`` library over the session's
:class:`~socketeer.stream.ByteStream`.  The sans-IO pieces (request
targets, ranges and validators, listings, authorization) are tested with
plain values; :mod:`.files` serves a share.
"""
