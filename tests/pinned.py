"""Running a piece of a test pinned to one core, as `taskset -c N` pins a whole run."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import pytest

needs_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2,
    reason="needs an affinity mask (Linux) and more than one logical core",
)


@contextlib.contextmanager
def one_core() -> Iterator[int]:
    """This process (and the processes it starts) on the first core of its affinity mask; the
    mask is restored afterwards."""
    before = os.sched_getaffinity(0)
    core = min(before)
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        os.sched_setaffinity(0, before)
