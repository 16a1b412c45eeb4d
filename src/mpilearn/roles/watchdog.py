"""How long a rank waits for a peer before declaring it stuck or dead.

MPI launchers end the job when a process dies, but not when one hangs or
is stopped. Every wait in a training loop therefore has a limit: --timeout
when given, else an adaptive one that scales with the model (a multiple of
the slowest exchange seen so far, so a big model is not cut short and a
small one does not wait minutes).
"""

from __future__ import annotations

from ..comm import WaitTimeout
from ..errors import CommunicationError

# Before the first exchange: long enough for compilation (jax.jit, tf.function) and first reads.
FIRST_EXCHANGE_S = 600.0
MIN_TIMEOUT_S = 120.0
INTERVAL_FACTOR = 20.0
# What a rank announces before long work others wait on (validation, checkpoint, model
# building; see Communicator.busy): their waits allow it on top of their limit.
BUSY_S = FIRST_EXCHANGE_S


class Watchdog:
    def __init__(self, configured: float | None) -> None:
        self.configured = configured
        self.slowest = 0.0

    def limit(self) -> float:
        if self.configured is not None:
            return self.configured
        if not self.slowest:
            return FIRST_EXCHANGE_S
        return max(MIN_TIMEOUT_S, INTERVAL_FACTOR * self.slowest)

    def observe(self, seconds: float) -> None:
        self.slowest = max(self.slowest, seconds)

    def error(self, who: str, waited: float) -> CommunicationError:
        option = f"--timeout {self.configured:g}" if self.configured is not None else "adaptive timeout; set --timeout"
        return CommunicationError(f"{who} sent nothing for {waited:.0f}s ({option}): it is stuck, stopped or dead")


__all__ = ["Watchdog", "WaitTimeout"]
