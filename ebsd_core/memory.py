"""Keep freed memory in the process while the network runs on the CPU (glibc's allocator).

glibc serves every allocation above 32 MB with a fresh ``mmap`` and unmaps it again when it is
freed. A network's activations at 128-224 px are that large (32 x 96 x 112 x 112 floats: 154 MB),
so every batch asked the kernel for new pages and faulted on each 4 kB of them; on a 2-core
virtual machine that took more time than the arithmetic. Kept in the heap instead, the pages are
reused batch after batch: EfficientNet-Lite0 inference at 224 px went from 24-27 to 57-58 patterns/s and
a training step from 3.2-3.5 to 2.3-2.5 s (bench/RESULTS.md, "Freed memory kept in the process").

:func:`keep_freed_memory` sets that for the process (the command line and the benchmarks call it
first); ``make app`` starts the dashboard with the same settings through ``GLIBC_TUNABLES``
(:data:`GLIBC_TUNABLES`), which also covers the job threads, and the workers of a dask LocalCluster
start with them too (:func:`worker_environment`). :func:`release_freed_memory` gives
the memory back to the system when a job has finished. ``EBSD_KEEP_FREED_MEMORY=0`` turns it
off; other C libraries and systems, and the workers of a cluster started elsewhere, are left alone.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: the largest trim threshold ``mallopt`` takes (an int): a free top of the heap beyond it goes back
TRIM_THRESHOLD = 2**31 - 1
#: the same for a whole process, set before it starts (``make app``); one arena, so that job threads
#: allocate from the heap as well (a thread's own arena maps its large blocks afresh each time)
GLIBC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184:glibc.malloc.arena_max=1"


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or os.environ.get("EBSD_KEEP_FREED_MEMORY", "1") == "0":
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library this process already uses
    except OSError:
        return None
    # musl and others have their own allocators and no gnu_get_libc_version
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def keep_freed_memory() -> bool:
    """Keep freed blocks of any size in this process for reuse; True when glibc took the settings."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def worker_environment() -> dict[str, str]:
    """glibc's environment variables for the same settings in a new process, from its start: what a dask
    LocalCluster's workers get (their tasks run in threads, hence one arena). Empty where it does not apply."""
    if _glibc() is None:
        return {}
    return {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD), "MALLOC_ARENA_MAX": "1"}


def release_freed_memory() -> None:
    """Give the freed memory kept in the process back to the system (``malloc_trim``), and a GPU's memory that
    torch keeps for reuse back to the other programs that share the GPU."""
    libc = _glibc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    torch = sys.modules.get("torch")  # not imported for it: a process without torch has no GPU memory to give
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
