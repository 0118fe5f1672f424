"""A worker process that ends when its parent does, even a parent killed with SIGKILL.

``serve --workers N`` forks its workers; a parent that is stopped passes the
signal on, but one killed with SIGKILL (or by the OOM killer) cannot.  On
Linux the kernel can tell a process when its parent ends:
``prctl(PR_SET_PDEATHSIG, SIGTERM)``, and the worker then shuts down as
for a SIGTERM from the parent.  Elsewhere the worker goes on until stopped.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

__all__ = ["end_with_parent"]

log = logging.getLogger("socketeer.server")

#: prctl's option for the signal sent when the parent ends (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def end_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Have this process sent ``signum`` when its parent, whose pid is ``parent``, ends.

    A parent that ended before this was asked counts too: the signal is sent at once.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        log.debug("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)
