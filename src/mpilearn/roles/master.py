"""The master loop, for the top master and for sub-masters.

A master serves a set of clients (workers, or sub-masters for the top of a
tree). Asynchronous algorithms fold in whichever update arrives first;
synchronous ones wait for one update from every client, fold them in as one
round, and answer all. A sub-master also exchanges with the top master every
`--sync-every` of its own steps and whenever its block finishes an epoch.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from ..algorithms import CenterRule, Scaled
from ..algorithms.learning_rate import LearningRateControl
from ..comm import Tag, WaitTimeout
from ..comm.topology import Role
from ..flat import Header, Message
from ..interrupt import STOP
from .job import Job
from .shards import Shard
from .uplink import Uplink
from .watchdog import BUSY_S


@dataclass
class _Round:
    """Bookkeeping of the updates folded in at one step."""

    finished_epoch: int | None = None
    done_slots: list[int] = field(default_factory=list)


def run_master(job: Job) -> None:
    config, backend, comm, topology = job.config, job.backend, job.comm, job.topology
    algorithm = config.algorithm
    spec = algorithm.spec
    assert spec.center is not None, f"{spec.name} has no master"
    role = topology.role(comm.rank)
    clients = topology.children(comm.rank)
    top = role in (Role.MASTER, Role.SERVER)  # a sharded server exchanges with workers only
    # The top of a tree takes deltas (or elastic exchanges) from its sub-masters, and so does a master
    # whose model trains through its own step.
    deltas = (top and bool(topology.submasters)) or job.own_train_step
    shard = Shard(comm, backend, topology.server_ranks) if topology.servers > 1 else None
    rule = spec.center(algorithm, shard.backend if shard else backend, len(clients), deltas)
    if shard is not None:  # checkpoints keep every slice's optimizer state
        shard.attach(rule.optimizer, config, job.restored_state, config.run_dir)
    uplink = None
    if not top:
        assert spec.upstream is not None, f"{spec.name} has no trees"
        uplink = Uplink(
            comm, topology.parent(comm.rank), spec.upstream(algorithm, backend), backend.layout, job.watchdog
        )
    control = LearningRateControl(
        rule.optimizer if spec.scales is Scaled.MASTER else None,
        topology.num_workers,
        algorithm.lr_scaling,
        algorithm.warmup_epochs,
    )
    _Server(job, clients, rule, algorithm.lockstep, uplink, control, shard).run()
    if shard is not None:
        shard.finish()


class _Server:
    def __init__(
        self,
        job: Job,
        clients: tuple[int, ...],
        rule: CenterRule,
        synchronous: bool,
        uplink: Uplink | None,
        control: LearningRateControl,
        shard: Shard | None = None,
    ) -> None:
        self.job, self.clients, self.rule = job, clients, rule
        self.synchronous, self.uplink, self.control = synchronous, uplink, control
        self.shard = shard
        self.comm = job.comm
        layout = shard.layout if shard is not None else job.backend.layout
        self.inbox = [Message(layout) for _ in clients]
        self.outbox = [Message(layout) for _ in clients]
        self.receives = [self.comm.irecv(self.inbox[i].buffer, source=c) for i, c in enumerate(clients)]
        self.sends = [self.comm.NULL_REQUEST for _ in clients]
        self.active = set(range(len(clients)))
        self.epoch_ends: Counter[int] = Counter()
        self.stopping = False
        self.step = 0
        self.pending_upstream = 0
        self.tags = [0 for _ in clients]  # tag of the latest message from each client
        self.silence = [0.0 for _ in clients]  # seconds this master idled since each client's last message

    def run(self) -> None:
        history = self.job.history
        max_staleness = self.job.config.algorithm.max_staleness
        while self.active:
            with self.job.timeline.span("wait"):
                slots = self._take_leaves(self._wait())
            if not slots:
                continue
            accepted = []
            staleness = 0
            for slot in slots:
                update = self.inbox[slot]
                staleness = self.step - int(update.get(Header.BASE_STEP))
                if not self.synchronous:
                    history.record_staleness(staleness)
                if max_staleness is not None and staleness > max_staleness and not self.synchronous:
                    history.dropped_updates += 1
                else:
                    accepted.append((slot, update))
            if accepted:
                # An asynchronous step folds in one update: the staleness rule reads its staleness.
                self.control.update(
                    history.samples_seen / max(1, self.job.workload.samples_per_epoch),
                    0 if self.synchronous else staleness,
                )
                with self.job.timeline.span("apply"):
                    self.rule.absorb(accepted)
                self.step += 1
                history.updates += 1  # master steps, not messages
            round_ = self._account(slots)
            supervisor = self.job.supervisor
            if supervisor is not None and supervisor.on_update():  # rank 0: progress, --validate-every, callbacks
                self.stopping = True
            if (
                self.uplink is None
                and STOP.requested
                and not self.stopping
                and not STOP.wait_for_epoch_end(self.job.config)
            ):
                self.stopping = STOP.acted = True  # SIGTERM/SIGINT: no checkpoint due before the grace ends
            if self.uplink is not None:
                with self.job.timeline.span("exchange up"):
                    self._exchange_upstream(slots, round_)
            with self.job.timeline.span("reply"):
                for slot in slots:
                    self._answer(slot, stop=self.stopping or slot in round_.done_slots)
            if self.shard is not None and self.shard.index > 0 and round_.finished_epoch is not None:
                self.shard.hand_over()  # rank 0 validates the weights of every slice
            elif supervisor is not None and round_.finished_epoch is not None and not self.stopping:
                with self.comm.busy_while(
                    BUSY_S, self.clients
                ):  # the clients' waits must not count validation and checkpoint
                    if self.shard is not None:
                        self.shard.assemble()
                    self.stopping = supervisor.epoch_reached(
                        round_.finished_epoch + 1, self.shard or self.rule.optimizer
                    )
        self.comm.wait_all(self.sends)

    def _take_leaves(self, slots: list[int]) -> list[int]:
        """Sharded servers: workers another server (rank 0) told to stop
        leave without an answer; the rest are updates."""
        for slot in [s for s in slots if self.tags[s] == Tag.LEAVE]:
            self.receives[slot] = self.comm.NULL_REQUEST
            self.active.discard(slot)
            slots.remove(slot)
        return slots

    def _wait(self) -> list[int]:
        """The next update(s). Only time spent idle here counts toward a
        client's silence, so long validations never look like a hang."""
        watchdog = self.job.watchdog
        started = time.monotonic()
        if self.synchronous:
            active = sorted(self.active)
            try:
                statuses = self.comm.wait_all([self.receives[s] for s in active], watchdog.limit())
            except WaitTimeout as error:
                silent = [self.clients[active[i]] for i in error.pending]
                raise watchdog.error(self._names(silent), time.monotonic() - started) from None
            for slot, status in zip(active, statuses):
                self.tags[slot] = status.Get_tag()
            watchdog.observe(time.monotonic() - started)
            return active
        oldest = max((self.silence[s] for s in self.active), default=0.0)
        try:
            slot, status = self.comm.wait_any(self.receives, max(0.0, watchdog.limit() - oldest))
        except WaitTimeout:
            waited = time.monotonic() - started
            silent = [self.clients[s] for s in self.active if self.silence[s] + waited >= watchdog.limit()]
            raise watchdog.error(self._names(silent), max(self.silence[s] for s in self.active) + waited) from None
        waited = time.monotonic() - started
        for other in self.active:
            self.silence[other] += waited
        watchdog.observe(self.silence[slot])
        self.silence[slot] = 0.0
        self.tags[slot] = status.Get_tag()
        return [slot]

    def _names(self, ranks: list[int]) -> str:
        role = self.job.topology.role
        return ", ".join(f"{role(r).value} rank {r}" for r in ranks)

    def _account(self, slots: list[int]) -> _Round:
        """Counters, per-client losses and epoch ends of this step's updates."""
        history, epochs = self.job.history, self.job.config.epochs
        round_ = _Round()
        for slot in slots:
            update, client = self.inbox[slot], self.clients[slot]
            history.record_update(
                client, update.get(Header.LOSS_SUM), int(update.get(Header.BATCHES)), int(update.get(Header.SAMPLES)), 0
            )
            history.skipped_batches += int(update.get(Header.SKIPPED))
            if update.get(Header.INTERRUPT):
                STOP.note(int(update.get(Header.INTERRUPT)))
            if self.tags[slot] == Tag.UPDATE_EPOCH_END:
                epoch = int(update.get(Header.EPOCH))
                history.close_worker_epoch(client)
                self.epoch_ends[epoch] += 1
                if self.epoch_ends[epoch] == len(self.clients):
                    round_.finished_epoch = epoch
                if epoch + 1 >= epochs:
                    round_.done_slots.append(slot)
        return round_

    def _exchange_upstream(self, slots: list[int], round_: _Round) -> None:
        """A sub-master passes its block's progress up the tree."""
        assert self.uplink is not None
        for slot in slots:
            update = self.inbox[slot]
            self.uplink.add_stats(
                update.get(Header.LOSS_SUM), int(update.get(Header.BATCHES)), int(update.get(Header.SAMPLES))
            )
            self.uplink.add_skipped(update.get(Header.SKIPPED))
        self.pending_upstream += 1
        due = self.pending_upstream >= self.job.config.algorithm.sync_every
        if self.stopping or not (due or round_.finished_epoch is not None):
            return
        epoch = round_.finished_epoch if round_.finished_epoch is not None else max(self.epoch_ends, default=0)
        if self.uplink.exchange(epoch, round_.finished_epoch is not None, self.pending_upstream):
            self.stopping = True
        self.pending_upstream = 0

    def _answer(self, slot: int, stop: bool) -> None:
        comm = self.comm
        comm.wait(self.sends[slot])
        out = self.outbox[slot]
        self.rule.reply(slot, out)
        out.set(Header.BASE_STEP, self.step)
        self.sends[slot] = comm.isend(out.buffer, self.clients[slot], Tag.STOP if stop else Tag.WEIGHTS)
        if stop:
            self.receives[slot] = comm.NULL_REQUEST
            self.active.discard(slot)
        else:
            self.receives[slot] = comm.irecv(self.inbox[slot].buffer, source=self.clients[slot])
