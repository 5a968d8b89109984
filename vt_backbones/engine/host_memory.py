"""glibc's allocator in CPU runs: freed memory kept for the next step instead of handed back to the kernel.

glibc's ``malloc`` serves a request of 32 MB or more (an activation of a stage-1 block at 512², batch 2) with a
fresh ``mmap`` and unmaps it when it is freed, so every training step faults all its large tensors in again, one
4 KB page at a time. Measured on an AMD EPYC (AVX2, one thread, fwd+bwd, batch 2, 512²): Swin-T's step took
155k page faults and 0.36 s of kernel time (4.5 s a step), Focal-T's 310k-630k; served from the heap, they take
none, and the steps take 4.2 s and 6.3 s; `make demo` took 285 s instead of 383 s (docs/performance.md). The cost
is memory: the heap keeps the loop's peak, and for the first steps outgrows the live tensors (glibc's memalign
cannot reuse a freed block for a request of its exact size until free neighbours merged with it): the peak RSS
rose 0.6% (Swin-T), 7% (Focal-T) and 25% (the demo's largest process, 1.83 -> 2.30 GB).
"""
from __future__ import annotations

import ctypes
import os
import platform

# mallopt(3) parameters of glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

#: The environment variables through which glibc takes these settings from a user; with one of them set,
#: `keep_freed_memory` leaves the allocator as the user configured it.
USER_SETTINGS = ('MALLOC_MMAP_MAX_', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TOP_PAD_')


def keep_freed_memory() -> bool:
    """Makes glibc serve every allocation of this process (and of processes it forks later, e.g. data loader
    workers) from its heap and keep freed memory there: ``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD,
    -1)``, as ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=-1`` would before the process starts.

    For CPU loops only (tools/train.py and tools/test.py call it when mmengine finds no accelerator): a GPU run's
    host memory is not its bottleneck. Returns whether it applied the settings: not where the C library is not
    glibc, nor when the environment sets one of `USER_SETTINGS`.
    """
    if platform.libc_ver()[0] != 'glibc' or any(name in os.environ for name in USER_SETTINGS):
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, -1))
