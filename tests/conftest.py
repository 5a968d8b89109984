import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(os.path.dirname(ROOT), 'shared', 'reference')
sys.path.insert(0, ROOT)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line('markers', 'slow: takes more than a few seconds (deselect with -m "not slow")')


# Under pytest-xdist (`make test` runs one worker per core) each worker computes on one thread: the
# tests' small tensors gain little from intra-op threads, and two threaded workers would oversubscribe.
THREADS = 1 if os.environ.get('PYTEST_XDIST_WORKER') else min(2, os.cpu_count() or 1)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
