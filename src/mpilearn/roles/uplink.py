"""One rank's exchanges with its master: a worker's, or a sub-master's with the top."""
from __future__ import annotations

import time

from ..algorithms import ClientRule
from ..comm import Communicator, Tag, WaitTimeout
from ..flat import FlatLayout, Header, Message
from ..interrupt import STOP
from .watchdog import Watchdog


class Uplink:
    """Sends the client rule's update, waits (without spinning) for the
    master's answer, and hands it to the rule. The update's header carries
    the counters the master records (samples, loss, batches, epoch)."""

    def __init__(self, comm: Communicator, parent: int, rule: ClientRule, layout: FlatLayout, watchdog: Watchdog) -> None:
        self.comm = comm
        self.watchdog = watchdog
        self.parent = parent
        self.rule = rule
        self.update = Message(layout)
        self.reply = Message(layout)
        self.base_step = 0.0  # master step of the weights we hold, for staleness

    def add_stats(self, loss_sum: float, batches: int, samples: int) -> None:
        header = self.update.header
        header[Header.LOSS_SUM] += loss_sum
        header[Header.BATCHES] += batches
        header[Header.SAMPLES] += samples

    def add_skipped(self, count: float) -> None:
        self.update.header[Header.SKIPPED] += count

    def exchange(self, epoch: int, epoch_end: bool, batches: int) -> bool:
        """One round trip; returns True when the master says stop."""
        update, reply = self.update, self.reply
        self.rule.fill(update, max(batches, 1))
        update.set(Header.EPOCH, epoch)
        update.set(Header.BASE_STEP, self.base_step)
        update.set(Header.INTERRUPT, STOP.signum)  # the master decides when the job stops
        receive = self.comm.irecv(reply.buffer, source=self.parent)
        started = time.monotonic()
        limit = self.watchdog.limit()
        try:
            self.comm.wait(self.comm.isend(update.buffer, self.parent, Tag.UPDATE_EPOCH_END if epoch_end else Tag.UPDATE), limit,
                           awaited=(self.parent,))
            status = self.comm.wait(receive, limit, awaited=(self.parent,))  # a busy notice of the master excuses it
        except WaitTimeout:
            raise self.watchdog.error(f"master rank {self.parent}", time.monotonic() - started) from None
        self.watchdog.observe(time.monotonic() - started)
        self.rule.absorb(reply)
        self.base_step = reply.get(Header.BASE_STEP)
        update.buffer[:] = 0.0
        return status.Get_tag() == Tag.STOP
