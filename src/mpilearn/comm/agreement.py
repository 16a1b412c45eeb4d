"""Rank 0 decides, every rank learns the verdict: the same result or the same error."""

from __future__ import annotations

import traceback
from typing import Any, Callable

from ..errors import MpilearnError
from .transport import Communicator

# How long rank 0's part (opening the data, building the model) may take
# before the others give up on it (see Communicator.busy).
WORK_LIMIT_S = 600.0


def decide_on_root(comm: Communicator, work: Callable[[], Any], what: str = "the start-up checks on rank 0") -> Any:
    """Run `work` on rank 0 and give every rank its result, or raise its error
    on every rank (marked `collective`, so that only rank 0 reports it). A
    bad input file then ends all ranks together instead of leaving the
    others waiting for a rank that gave up. Anything `work` raises counts,
    SystemExit and KeyboardInterrupt included (a user's model file calling
    sys.exit) becomes that error on every rank."""
    outcome: Any = None
    if comm.rank == 0:
        try:
            with comm.busy_while(WORK_LIMIT_S):
                outcome = ("ok", work())
        except MpilearnError as exc:
            outcome = ("error", exc)
        except Exception as exc:  # unexpected: still end every rank, with the cause
            traceback.print_exc()
            outcome = ("error", MpilearnError(f"{type(exc).__name__}: {exc}"))
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: the others must not wait for an answer
            outcome = ("error", MpilearnError(f"rank 0 ended {what} with {type(exc).__name__}({exc})"))
    outcome = comm.bcast_object(outcome, what=what)
    if outcome[0] == "error":
        raise outcome[1].on_every_rank()
    return outcome[1]
