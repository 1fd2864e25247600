"""Sharded evaluation across processes, GPUs and machines: the torchrun environment contract.

A process started by ``torchrun`` (``torch.distributed.run``) finds ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` in its environment; :func:`shard_from_env` reads them into a :class:`Shard`.
Rank ``r`` of a world of ``W`` evaluates the batch windows ``b`` with ``b % W == r`` (windows are
defined by dataset position, so the assignment never depends on which files are readable),
writes its records to its own file, and needs no collective for the work itself: the only
communication is a barrier before rank 0 merges the shards (:mod:`.merge`). The process group
(gloo on the CPU, NCCL on GPUs) exists only for that barrier; ``torch.distributed`` is used as
is, since it already does the rendezvous across machines.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import ConfigError

__all__ = ["Shard", "barrier", "init_process_group", "resolve_shard_device", "shard_from_env"]

DEFAULT_TIMEOUT_S = 7 * 24 * 3600.0
"""How long a rank waits at a barrier for the slowest one (``SRDEFENSE_DIST_TIMEOUT`` seconds):
a rank that finishes its share early waits there for the others, so the default is long."""


@dataclass(frozen=True)
class Shard:
    """This process's share of an evaluation.

    Attributes:
        rank: global rank (``RANK``).
        world: number of processes (``WORLD_SIZE``).
        local_rank: rank on this machine (``LOCAL_RANK``): the GPU it uses.
        group: whether a process group joins the ranks (launched by torchrun); without one
            (tests, or shards run one after another) nothing waits for anything.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: bool = False

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ConfigError(f"shard: expected 0 <= rank < world size, got rank {self.rank} of {self.world}")

    @property
    def leader(self) -> bool:
        """Rank 0: does the once-only work (first-batch checks, examples, summary, reports)."""
        return self.rank == 0

    def owns(self, window: int) -> bool:
        """Whether batch window ``window`` belongs to this rank."""
        return window % self.world == self.rank

    def windows(self, n_windows: int) -> list[int]:
        """The windows of this rank among ``range(n_windows)``."""
        return list(range(self.rank, n_windows, self.world))


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}: expected an integer, got {raw!r}") from None


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard:
    """The :class:`Shard` of this process from ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``.

    Without ``WORLD_SIZE`` (a plain process) it is rank 0 of 1.

    Raises:
        ConfigError: a variable that is not an integer, or a rank outside the world.
    """
    env = os.environ if env is None else env
    world = _int_env(env, "WORLD_SIZE")
    if world is None:
        return Shard()
    rank = _int_env(env, "RANK")
    if rank is None:
        raise ConfigError(
            "environment variable RANK: not set, but WORLD_SIZE is (start the ranks with torchrun)"
        )
    local = _int_env(env, "LOCAL_RANK")
    return Shard(rank=rank, world=world, local_rank=rank if local is None else local, group=world > 1)


def resolve_shard_device(shard: Shard, device: str | torch.device) -> torch.device:
    """The device of a rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun; others as given."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and shard.group:
        return torch.device("cuda", shard.local_rank)
    return dev


def init_process_group(shard: Shard, device: torch.device) -> bool:
    """Join the ranks' process group (NCCL for CUDA devices, gloo otherwise), if not yet joined.

    Returns:
        Whether this call created the group (then :func:`destroy_process_group` ends it).
    """
    if not shard.group or dist.is_initialized():
        return False
    timeout = datetime.timedelta(seconds=float(os.environ.get("SRDEFENSE_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    return True


def barrier(shard: Shard, device: torch.device) -> None:
    """Wait for every rank (nothing to wait for without a process group)."""
    if not shard.group or not dist.is_initialized():
        return
    if dist.get_backend() == "nccl" and device.type == "cuda":
        dist.barrier(device_ids=[device.index if device.index is not None else shard.local_rank])
    else:
        dist.barrier()


def destroy_process_group() -> None:
    """Leave the process group."""
    if dist.is_initialized():
        dist.destroy_process_group()
