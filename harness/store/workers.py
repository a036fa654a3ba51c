"""Who is running what: a worker is "host:pid".

A run or a sweep trial records the worker that started it. When that worker's process is
gone (killed, crashed) while the run or trial still says "running", the next process on the
same host can tell, and mark it failed instead of leaving it looking alive for ever. Workers
on other hosts cannot be checked this way (the Optuna RDB storage's heartbeat covers those).
"""
from __future__ import annotations

import os
import socket


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def died(worker: str | None) -> bool:
    """True when `worker` ran on this host, is not this process, and its process no longer exists."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, owned by someone else
        return False
    return False
