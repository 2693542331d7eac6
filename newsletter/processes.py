"""Processes of this machine: whether one still runs (the file transport's leftovers, a dead sender's claims)."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """True if a process with this id runs here (under any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
