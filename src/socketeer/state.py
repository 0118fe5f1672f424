"""Where socketeer keeps what must survive a restart: the user's state directory.

``$XDG_STATE_HOME/socketeer`` (by default ``~/.local/state/socketeer``), made
on first use and readable by its owner only.  It holds the generated TLS
certificates (``tls/``) and the clients' ``known_hosts``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["state_dir"]


def state_dir() -> Path:
    """The user's socketeer state directory, made (mode 0700) if it does not exist."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    path = Path(base) / "socketeer"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
