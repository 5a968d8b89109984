"""What tools/train.py and tools/test.py share: the common options, the config they make, the allocator setting
of a CPU run and the end of a distributed run."""
from __future__ import annotations

import argparse
import gc
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.device import get_device
from mmengine.logging import print_log

from vt_backbones.engine.host_memory import USER_SETTINGS, keep_freed_memory


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='the dir for logs, checkpoints and metrics '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. train_cfg.max_iters=10 or a list as key="[a,b]"')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """The config file with ``--cfg-options``, the launcher and the work dir applied."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def keep_freed_memory_on_cpu() -> None:
    """On a machine without an accelerator, glibc keeps freed memory for the next step (`vt_backbones.engine.
    host_memory`: no page faults for the large tensors at every step); GPU runs keep the C library's default."""
    if get_device() == 'cpu' and keep_freed_memory():
        print_log('CPU run: glibc keeps freed memory for the next step (mallopt M_MMAP_MAX=0, no trimming; '
                  f'set one of {", ".join(USER_SETTINGS)} to choose otherwise)', logger='current')


def end_distributed_run() -> None:
    """Shut the process group down while the interpreter is fully alive; call it once the run's Runner is gone.

    mmengine's Runner never destroys the group. Then it lives, with the backend's C++ threads, until the interpreter
    finalizes, and a gloo worker thread that releases a finished collective only then (a Python-made tensor of
    ``all_gather_object``) has to take the GIL of a finalizing interpreter: CPython ends that thread with
    ``pthread_exit``, whose unwinding through C++ ends in ``std::terminate``: "terminate called without an active
    exception", SIGABRT, exit -6 on a rank that did all its work (issue 20). ``destroy_process_group`` alone does not
    stop gloo's threads (torch 2.13); the group's destructor does, when its last reference goes: the default
    group's, the DDP model's and its reducer's. (A DDP model built before anything imported ``torch._dynamo``
    keeps the group alive for good; mmengine imports it first.) So: a barrier (no rank shuts down while another
    still talks to it; nccl's on the current device, the one mmengine set), ``destroy_process_group`` (nccl: its
    communicators), collect the Runner's reference cycles, and drop the last reference from Python, whose destructor
    releases the GIL while it joins the threads.

    Only after a run that succeeded: a rank whose run raised must exit at once (a barrier or a join would wait for
    ranks that wait in a collective for it); the launcher stops the others when it exits.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    nccl = torch.distributed.get_backend() == 'nccl'
    torch.distributed.barrier(device_ids=[torch.cuda.current_device()] if nccl else None)
    world = torch.distributed.group.WORLD
    torch.distributed.destroy_process_group()
    gc.collect()  # the Runner's hooks and loops refer back to it: its DDP model is freed only by a collection
    del world  # the last reference: the destructor joins the backend's threads here, not at finalization
