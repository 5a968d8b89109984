"""`vt_backbones.engine.host_memory`: a CPU loop's large tensors reuse freed memory instead of faulting pages in."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='mallopt is glibc\'s')

BLOCK_MB = 64  # above glibc's largest mmap threshold (32 MB): by default such a block is mapped afresh every time
# A loop allocating, filling and freeing one block, in a process of its own (the setting is process-wide); prints
# whether the setting was applied and the page faults of each round. With the setting, glibc 2.36's heap grows for
# up to about ten rounds (PyTorch asks for 64-byte aligned memory, and glibc's memalign cannot reuse a freed block
# of exactly the size asked for until free neighbours have merged with it), then serves every round from freed
# memory.
ROUNDS = 30
LOOP = f'''
import resource, sys, torch
from vt_backbones.engine.host_memory import keep_freed_memory
torch.set_num_threads(1)
applied = keep_freed_memory() if sys.argv[1] == 'keep' else False
faults = []
for _ in range({ROUNDS}):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones({BLOCK_MB} << 18)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, *faults)
'''


def run_loop(mode: str, **env: str) -> tuple[bool, list[int]]:
    out = subprocess.run([sys.executable, '-c', LOOP, mode], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, 'PYTHONPATH': ROOT, **env}, timeout=120).stdout.split()
    return out[0] == 'True', [int(n) for n in out[1:]]


PAGES = (BLOCK_MB << 20) // os.sysconf('SC_PAGE_SIZE')


def test_glibc_default_faults_a_large_block_in_at_every_allocation():
    """The cost the setting removes, measured: without it every round touches the block's pages afresh."""
    _, faults = run_loop('default')
    assert all(f >= PAGES for f in faults), faults


def test_kept_memory_serves_the_block_again_without_page_faults():
    applied, faults = run_loop('keep')
    assert applied
    assert faults[0] >= PAGES and all(f < PAGES // 100 for f in faults[-5:]), faults


def test_a_user_malloc_setting_wins():
    applied, faults = run_loop('keep', MALLOC_MMAP_MAX_='65536')
    assert not applied and all(f >= PAGES for f in faults), faults
