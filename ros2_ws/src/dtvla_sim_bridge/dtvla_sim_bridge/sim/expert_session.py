"""The scripted expert in the one episode loop, held by a worker process across episodes.

`dtvla-expert-eval` and `dtvla-collect-demos` both run many episodes per worker; building a LIBERO env takes seconds,
so the loop and its expert are kept while the task stays the same and rebuilt (one render context per process)
when it changes, or after an episode raised.
"""

from __future__ import annotations

from collections.abc import Callable

from dtvla_policy.protocol import EpisodeProtocol
from dtvla_sim_bridge.sim.episode import EpisodeLoop
from dtvla_sim_bridge.sim.expert import ScriptedExpert
from dtvla_sim_bridge.sim.libero_env import LiberoSim


class ExpertSession:
    """`make_sim(task)` builds the simulator of a task; `protocol` is the episodes' protocol."""

    def __init__(self, make_sim: Callable[[int], LiberoSim], protocol: EpisodeProtocol) -> None:
        self._make_sim = make_sim
        self._protocol = protocol
        self.loop: EpisodeLoop | None = None
        self.expert: ScriptedExpert | None = None

    def for_task(self, task: int) -> tuple[EpisodeLoop, ScriptedExpert]:
        if self.loop is not None and self.loop.sim.task_id != task:
            self.close()  # one render context per process
        if self.loop is None or self.expert is None:
            sim = self._make_sim(task)
            self.loop, self.expert = EpisodeLoop(sim, self._protocol), ScriptedExpert(sim)
        return self.loop, self.expert

    def close(self) -> None:
        if self.loop is not None:
            self.loop.sim.close()
        self.loop = self.expert = None
