"""One rank's exchanges with its master: a worker's, or a sub-master's with the top."""
from __future__ import annotations

from ..algorithms import ClientRule
from ..comm import Communicator, Tag
from ..flat import FlatLayout, Header, Message


class Uplink:
    """Sends the client rule's update, waits (without spinning) for the
    master's answer, and hands it to the rule. The update's header carries
    the counters the master records (samples, loss, batches, epoch)."""

    def __init__(self, comm: Communicator, parent: int, rule: ClientRule, layout: FlatLayout) -> None:
        self.comm = comm
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

    def exchange(self, epoch: int, epoch_end: bool, batches: int) -> bool:
        """One round trip; returns True when the master says stop."""
        update, reply = self.update, self.reply
        self.rule.fill(update, max(batches, 1))
        update.set(Header.EPOCH, epoch)
        update.set(Header.BASE_STEP, self.base_step)
        receive = self.comm.irecv(reply.buffer, source=self.parent)
        self.comm.send(update.buffer, self.parent, Tag.UPDATE_EPOCH_END if epoch_end else Tag.UPDATE)
        status = self.comm.wait(receive)
        self.rule.absorb(reply)
        self.base_step = reply.get(Header.BASE_STEP)
        update.buffer[:] = 0.0
        return status.Get_tag() == Tag.STOP
