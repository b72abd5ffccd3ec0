"""Which rank this process is: torchrun's environment variables, read without importing torch."""

from __future__ import annotations

import os
from dataclasses import dataclass

# Extra torchrun arguments for several machines (rendezvous endpoint, id, node count), e.g.
# "--nnodes 2 --rdzv-backend c10d --rdzv-endpoint host0:29400 --rdzv-id study1". They are
# about where the job runs, not what it computes, so they live in the environment, not in
# params.yaml (train.nproc, the world size, is a param: it changes the numbers).
TORCHRUN_ENV = "PRUNELAB_TORCHRUN"
# Set by prunelab's launcher for the ranks it starts: it reports their failures itself.
LAUNCHED_ENV = "PRUNELAB_LAUNCHED"


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def writer(self) -> bool:
        """Rank 0: the one process that writes outputs and logs to MLflow."""
        return self.rank == 0


ONE_PROCESS = World()  # a plain process: rank 0 of 1


def current() -> World:
    """This process's place in the job; a plain process (no torchrun) is rank 0 of 1."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return ONE_PROCESS
    size = int(env["WORLD_SIZE"])
    return World(int(env["RANK"]), size, int(env.get("LOCAL_RANK", 0)), int(env.get("LOCAL_WORLD_SIZE", size)))


def is_writer() -> bool:
    return current().writer
