"""Keep the memory a process frees for its next allocation (glibc's malloc, Linux).

glibc serves an allocation above its mmap threshold (at most 32 MB, dynamically) with a fresh
``mmap`` and returns it to the system when freed; the next one is faulted in again page by page,
each page zeroed by the kernel. A training step of the built-in VLM allocates and frees several
such blocks (the LM head's logits over a 49k-word vocabulary, their log-softmax and its gradient:
about 100 MB each on a caption batch): in a profile of a 5.5 s caption step on a 2-core virtual
machine, three operations on them (``fill_``, ``_log_softmax`` and its backward) took 0.6-0.7 s each,
against 14-35 ms on warm memory. Served from the heap and kept there, the same blocks are reused:
caption steps ran 1.08-1.11x faster, the demo warm-up 64 ± 8 s (README "Benchmarks",
``benchmarks/malloc.py``). The arithmetic is the same, the results bit-identical; the process keeps
its peak heap instead of giving it back between steps.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_LARGEST = 2**31 - 1  # mallopt takes an int

ENV = "ILLUME_RM_MALLOC"  # "system": leave glibc's defaults


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to their largest, so freed blocks stay in the heap for
    the next step; True where it was done (Linux with glibc, and ``ILLUME_RM_MALLOC`` not ``system``).
    Elsewhere (macOS, musl, Windows) a no-op."""
    if os.environ.get(ENV, "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, _LARGEST)) and bool(mallopt(M_TRIM_THRESHOLD, _LARGEST))
