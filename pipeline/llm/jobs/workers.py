"""Worker ids (`host:pid:random`) and telling a dead worker of this host from a live one."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path


def worker_id() -> str:
    """`host:pid:random`: unique per process; host and pid let a restart find dead workers."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def is_dead_local_worker(worker: str) -> bool:
    """True when `worker` ran on this host in a process that no longer exists."""
    host, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"
