"""Which share of the work this process owns: single process, accelerate launch/torchrun, or --shard I/N; and the
collectives that bring the shares together (generation and scoring both use them)."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sdeval.core.errors import ConfigError

# Ranks finish at different times (a resumed run can leave one rank nearly idle); the final barrier must
# not time out and take the whole launch down with it.
_BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class DistContext:
    """This process's rank among world_size; `group` is true when a torch.distributed group is up."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.group:
            import torch.distributed as dist  # torch: only with a process group up

            dist.barrier()

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` in rank order on the main process (None elsewhere); variable sizes, no padding."""
        if not self.group:
            return [obj]
        import torch.distributed as dist  # torch: only with a process group up

        found: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, found, dst=0)
        return found

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj` in rank order, on every rank."""
        if not self.group:
            return [obj]
        import torch.distributed as dist  # torch: only with a process group up

        found: list[Any] = [None] * self.world_size
        dist.all_gather_object(found, obj)
        return found


def from_group() -> DistContext:
    """The caller's own torch.distributed group (a training loop's DDP), if one is up; else a single process."""
    import torch.distributed as dist  # torch: only when asked for the caller's group

    if dist.is_available() and dist.is_initialized():
        return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), group=True)
    return DistContext()


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` (0-based I) -> (I, N)."""
    try:
        left, right = text.split("/")
        index, count = int(left), int(right)
    except ValueError as err:
        raise ConfigError(f"--shard: expected I/N such as 0/4, got {text!r}") from err
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard: expected 0 <= I < N, got {text!r}")
    return index, count


def detect(shard: tuple[int, int] | None = None, cpu: bool = False) -> DistContext:
    """Explicit shard > launcher environment (RANK/WORLD_SIZE from accelerate launch or torchrun) > single.

    With a launcher (MASTER_ADDR set) a process group comes up through accelerate's PartialState, so the
    main process can wait for the others before merging; `--shard` and bare RANK/WORLD_SIZE (array jobs)
    need none: every shard merges what it finds when it finishes.
    """
    if shard is not None:
        return DistContext(rank=shard[0], world_size=shard[1])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if "MASTER_ADDR" not in os.environ:
        return DistContext(rank=rank, world_size=world, local_rank=local)
    # torch and accelerate: only under a launcher, so a single process never loads them
    import torch
    from accelerate import PartialState  # accelerate: only under a launcher

    # Without an accelerator accelerate must be told it is a CPU launch, or it sets up no group at all and every
    # rank would silently do the whole job.
    cpu = cpu or not (torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available())
    state = PartialState(cpu=cpu, timeout=_BARRIER_TIMEOUT)
    if state.num_processes != world:
        raise ConfigError(
            f"launched as {world} processes (WORLD_SIZE) but accelerate set up {state.num_processes} "
            f"({state.distributed_type}); every rank would do the whole job"
        )
    # The group lives as long as the process: generation and scoring in one `sdeval bench` share it (accelerate's
    # state is a singleton, so a group destroyed after generating would not come back for scoring).
    atexit.unregister(_destroy_group)
    atexit.register(_destroy_group)
    return DistContext(
        rank=state.process_index,
        world_size=state.num_processes,
        local_rank=state.local_process_index,
        group=True,
    )


def _destroy_group() -> None:
    import torch.distributed as dist  # torch: registered only once a group came up

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
