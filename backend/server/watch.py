"""Is a process still running? The server watches the program that started it (the add-on's Blender, a test
runner), so a crash of that program does not leave a backend computing with nobody to answer."""

from __future__ import annotations

import os
import sys


def process_alive(pid: int) -> bool:
    """True while process `pid` exists (a zombie counts as alive until reaped; that is its parent's business)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        synchronize, wait_timeout = 0x00100000, 0x00000102
        handle = kernel32.OpenProcess(synchronize, False, pid)
        if not handle:
            return False
        try:
            return kernel32.WaitForSingleObject(handle, 0) == wait_timeout
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)  # POSIX: signal 0 checks existence and permission, sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True
