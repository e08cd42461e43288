"""The machine a run happens on: the cores this process may use, and what a benchmark records
about the host so that numbers from two machines (or two pinnings of one) can be told apart."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Sequence

CPUINFO = Path("/proc/cpuinfo")
CPUINFO_MODEL_KEYS = ("model name", "cpu model", "Model")  # x86, MIPS/s390, Arm boards
LIBRARIES = ("torch", "onnxruntime", "transformers", "tokenizers", "numpy")


def usable_cores() -> int:
    """The logical cores this process may run on: its affinity mask (`taskset`, cgroup cpusets)
    where the platform has one, else `os.cpu_count()`."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name from /proc/cpuinfo when it has one, else `platform.processor()`,
    else the machine type."""
    try:
        lines = cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and key.strip() in CPUINFO_MODEL_KEYS and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str | None]:
    """The installed version of each library, None where it is not installed (a module already
    imported under another distribution name, such as onnxruntime-gpu, gives its `__version__`)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = getattr(sys.modules.get(name), "__version__", None)
    return out


def host_meta() -> dict:
    """What a benchmark report records about where it ran."""
    return {
        "usable_cores": usable_cores(),
        "logical_cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "libraries": library_versions(),
    }
