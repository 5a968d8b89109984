"""Runs the 2-process CPU toy job of tests/test_compat.py again and again, to show that a distributed run which did
its work exits 0 every time (issue 20): TRAIN_RUNS trainings with tools/dist_train.sh, then TEST_RUNS evaluations
with tools/dist_test.sh of the first training's checkpoint, one after the other.

    nice -n 10 python tools/stress_dist.py [--train-runs 50] [--test-runs 20] [--work-dir DIR] [--timeout 300]

Every run gets a free port (``PORT``) and a directory of its own. A run counts as good when the launcher exits 0,
the run wrote its output (the checkpoint, the predictions) and no process naming the run's directory is left once
the launcher has returned. Prints one line a run and the counts, with the CPU time the runs took; exits 1 unless
every run was good, keeping the bad runs' logs (in the work dir it prints; it is deleted when all were good).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))  # the toy job and the tools' environment
from conftest import ROOT, free_port, tool_env  # noqa: E402
from test_compat import DIST_CONFIG  # noqa: E402  the config imports test_compat's toy model, data and metric

# What a bad run's log says, most telling first.
SIGNATURES = ('terminate called without an active exception', 'Fatal Python error', 'Address already in use',
              'Traceback (most recent call last)')


@dataclass
class Outcome:
    returncode: int | None  # None: killed after the timeout
    output_written: bool
    left_behind: list[str]
    seconds: float
    log: Path

    @property
    def good(self) -> bool:
        return self.returncode == 0 and self.output_written and not self.left_behind

    def describe(self) -> str:
        if self.good:
            return f'exit 0 in {self.seconds:.1f} s'
        status = 'timed out' if self.returncode is None else f'exit {self.returncode}'
        if self.returncode == 0 and not self.output_written:
            status += ', no output'
        text = self.log.read_text(errors='replace')
        found = [signature for signature in SIGNATURES if signature in text]
        if found:
            status += f': "{found[0]}"'
        if self.left_behind:
            status += f'; left behind: {self.left_behind}'
        return f'{status} in {self.seconds:.1f} s (log: {self.log})'


def processes_naming(path: Path) -> list[psutil.Process]:
    """Every process whose command line contains ``path`` (each run's config and work dir are under its own)."""
    found = []
    for process in psutil.process_iter(['cmdline']):
        if process.pid != os.getpid() and str(path) in ' '.join(process.info['cmdline'] or ()):
            found.append(process)
    return found


def kill_job(launcher: subprocess.Popen, run_dir: Path) -> None:
    """SIGKILL the launcher's process group (its own session) and every process of the run (torchrun starts each
    worker in a session of its own)."""
    groups = {launcher.pid}
    for process in processes_naming(run_dir):
        try:
            groups.add(os.getpgid(process.pid))
        except ProcessLookupError:
            pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    launcher.wait()


def run_job(command: list[str], run_dir: Path, output: Path, timeout: float) -> Outcome:
    log = run_dir / 'log.txt'
    started = time.monotonic()
    with open(log, 'w') as log_file:
        launcher = subprocess.Popen(command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                    env=tool_env(PORT=free_port()), start_new_session=True)
        try:
            returncode = launcher.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_job(launcher, run_dir)
            returncode = None
    seconds = time.monotonic() - started
    # torchrun returns once its workers have exited: whatever still runs now was left behind (a few seconds of
    # grace for a process in its last exit steps), and is killed so that it cannot disturb the next run.
    _, alive = psutil.wait_procs(processes_naming(run_dir), timeout=5)
    left_behind = []
    for process in alive:
        try:
            left_behind.append(f'{process.pid} {" ".join(process.cmdline())[:200]}')
            process.kill()
        except psutil.NoSuchProcess:
            pass
    return Outcome(returncode, output.exists(), left_behind, seconds, log)


def stress(name: str, runs: int, make_command: Callable[[Path], list[str]], output_name: str, work_dir: Path,
           timeout: float) -> tuple[int, Path | None]:
    """Runs ``make_command(run_dir)`` ``runs`` times; returns how many were good and the first good run's dir (the
    other good runs' dirs are deleted)."""
    good, first_good = 0, None
    for index in range(1, runs + 1):
        run_dir = work_dir / f'{name}_{index:03d}'
        run_dir.mkdir()
        outcome = run_job(make_command(run_dir), run_dir, run_dir / output_name, timeout)
        print(f'{name} {index}/{runs}: {outcome.describe()}', flush=True)
        if outcome.good:
            good += 1
            if first_good is None:
                first_good = run_dir
            else:
                shutil.rmtree(run_dir)
    return good, first_good


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--train-runs', type=int, default=50, help='tools/dist_train.sh runs (default: 50)')
    parser.add_argument('--test-runs', type=int, default=20, help='tools/dist_test.sh runs (default: 20)')
    parser.add_argument('--work-dir', type=Path, help='where the runs go (default: a new temporary dir)')
    parser.add_argument('--timeout', type=float, default=300, help='seconds after which a run is killed (300)')
    args = parser.parse_args(argv)
    for option in ('train_runs', 'test_runs'):
        if getattr(args, option) < 0:
            parser.error(f'--{option.replace("_", "-")} must be >= 0, got {getattr(args, option)}')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix='stress_dist_', dir=args.work_dir)).resolve()
    config = work_dir / 'toy_dist.py'
    config.write_text(DIST_CONFIG)
    print(f'work dir: {work_dir}', flush=True)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()

    def train_command(run_dir: Path) -> list[str]:
        return ['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(run_dir / 'work')]

    trained, first_trained = stress('train', args.train_runs, train_command, 'work/iter_2.pth', work_dir,
                                    args.timeout)
    tested = 0
    if args.test_runs:
        if first_trained is None:  # the test runs need a checkpoint
            _, first_trained = stress('setup_train', 1, train_command, 'work/iter_2.pth', work_dir, args.timeout)
        if first_trained is None:
            print('no training run succeeded: no checkpoint to test')
        else:
            checkpoint = work_dir / 'checkpoint.pth'
            shutil.copy(first_trained / 'work' / 'iter_2.pth', checkpoint)

            def test_command(run_dir: Path) -> list[str]:
                return ['bash', 'tools/dist_test.sh', str(config), str(checkpoint), '2',
                        '--work-dir', str(run_dir / 'work'), '--out', str(run_dir / 'preds.pkl')]

            tested, _ = stress('test', args.test_runs, test_command, 'preds.pkl', work_dir, args.timeout)

    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    print(f'training runs exited 0: {trained}/{args.train_runs}; test runs exited 0: {tested}/{args.test_runs} '
          f'(wall {time.monotonic() - started:.0f} s, CPU user+sys {cpu:.0f} s)')
    if trained == args.train_runs and tested == args.test_runs:
        shutil.rmtree(work_dir)
        return 0
    print(f'the logs of the bad runs are in {work_dir}')
    return 1


if __name__ == '__main__':
    raise SystemExit(main())
