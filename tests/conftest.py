from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
REFERENCE = os.path.join(os.path.dirname(ROOT), 'shared', 'reference')
sys.path.insert(0, ROOT)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line('markers', 'slow: takes more than a few seconds (deselect with -m "not slow")')
    config.addinivalue_line('markers', 'heavy: minutes of both cores each (the whole demo, CrossFormer\'s export, '
                                       'bf16 compiled blocks): `make test-heavy` and CI run them, `make test` does not')


# Under pytest-xdist (`make test` runs one worker per core) each worker computes on one thread: the
# tests' small tensors gain little from intra-op threads, and two threaded workers would oversubscribe.
THREADS = 1 if os.environ.get('PYTEST_XDIST_WORKER') else min(2, os.cpu_count() or 1)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)


class RunsCommand:
    """What a malicious checkpoint holds: unpickling it would run ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f'touch {self.marker}',)


def load_tool(name: str):
    """``tools/<name>.py`` as a module, to call its functions or ``main(argv)`` in this process."""
    spec = importlib.util.spec_from_file_location(f'vt_tool_{name}', os.path.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def fill_padding_with(monkeypatch: pytest.MonkeyPatch, value: float) -> None:
    """Makes every token that attention must ignore ``value``: what `layers.pad_hw` pads, and the padding slots
    that a `layers.WindowGrid` fills with real tokens (the slots its ``reverse_index`` never reads). Focal's
    neighbour keys gather from the map directly: `test_focal.py::test_keys_the_mask_hides_are_never_read`."""
    from vt_backbones import layers
    monkeypatch.setattr(layers.pad_hw, '__defaults__', (True, value))
    partition = layers.WindowGrid.partition

    def partition_with_filled_padding(grid: layers.WindowGrid, x: torch.Tensor) -> torch.Tensor:
        windows = partition(grid, x)
        padding = torch.ones(grid.partition_index.numel(), dtype=torch.bool, device=x.device)
        padding[grid.reverse_index] = False
        filled = windows.view(x.shape[0], -1, x.shape[-1]).masked_fill(padding[None, :, None], value)
        return filled.view_as(windows)
    monkeypatch.setattr(layers.WindowGrid, 'partition', partition_with_filled_padding)


# ---- running the project's tools in subprocesses --------------------------------------------------------
def tool_env(**extra: str) -> dict[str, str]:
    """The environment a tool runs in: these tests importable (configs name test modules in ``custom_imports``),
    this interpreter as the launchers' ``PYTHON``, the launchers' own thread count unless ``extra`` sets one."""
    env = {name: value for name, value in os.environ.items() if name != 'OMP_NUM_THREADS'}
    return {**env, 'PYTHON': sys.executable,
            'PYTHONPATH': os.pathsep.join(filter(None, [TESTS, os.environ.get('PYTHONPATH')])), **extra}


def run_tool(*args: str, env: dict[str, str] | None = None, timeout: int = 600,
             check: bool = True) -> subprocess.CompletedProcess:
    """Runs ``args`` in the repository (``tool_env`` plus ``env``); with ``check``, fails showing the output."""
    result = subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            env=tool_env(**(env or {})))
    if check:
        assert result.returncode == 0, f'{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}'
    return result


def free_port() -> str:
    """A TCP port free now, for a launcher's rendezvous (``PORT``)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def train_command(config: str, work: Path, *args: str, gpus: int = 1) -> list[str]:
    """``tools/train.py`` (one process) or ``tools/dist_train.sh`` (``gpus`` processes) on ``config``;
    a distributed run needs ``PORT`` in its environment."""
    if gpus == 1:
        return [sys.executable, 'tools/train.py', config, '--work-dir', str(work), *args]
    return ['bash', 'tools/dist_train.sh', config, str(gpus), '--work-dir', str(work), *args]


def train(config: str, work: Path, *args: str, gpus: int = 1, env: dict[str, str] | None = None,
          check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Trains ``config`` into ``work`` with the project's launcher (see ``train_command``)."""
    return run_tool(*train_command(config, work, *args, gpus=gpus), env={'PORT': free_port(), **(env or {})},
                    check=check, timeout=timeout)


def smallest_variants() -> list[str]:
    """One variant per family module, derived from the registry: the first variant of its class (families list
    their sizes smallest first) or, where a module registers several classes (Twins: PCPVT, SVT), of the class
    whose first variant has the fewest parameters (counted on the meta device)."""
    import vt_backbones
    by_module: dict[str, list[type]] = {}
    for cls in vt_backbones.families():
        by_module.setdefault(cls.__module__, []).append(cls)

    def params(cls: type) -> int:
        with torch.device('meta'):
            return sum(p.numel() for p in cls(arch=next(iter(cls.variants.values()))).parameters())
    return [next(iter((min(classes, key=params) if len(classes) > 1 else classes[0]).variants))
            for classes in by_module.values()]


SMALLEST = smallest_variants()
