"""The master loop's bookkeeping, in one process: the real loop (roles/master.py)
and a real Keras model on rank 0 of an in-process communicator; the test
plays both workers, message by message, so staleness, drops, epoch ends and
stops are exactly known."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from mpilearn.comm import Tag
from mpilearn.comm.local import LocalCommunicator, local_world
from mpilearn.comm.topology import Topology
from mpilearn.config import AlgorithmConfig, DataConfig, RunConfig
from mpilearn.flat import Header, Message
from mpilearn.history import History
from mpilearn.timeline import Timeline

LR = 0.5
SAMPLES = 64  # 32 per worker, batches of 8: 4 updates per worker and epoch


class Master:
    """run_master on rank 0 in a thread, with the supervisor mpilearn.train gives it."""

    def __init__(self, tmp_path: Path, user_hook=None, **algorithm) -> None:
        import keras

        from mpilearn import backends, supervisor
        from mpilearn.data.sources import ArraySource
        from mpilearn.data.validation import ValidationReader, validation_pieces
        from mpilearn.roles.checkpointer import Checkpointer
        from mpilearn.roles.job import Job, Workload
        from mpilearn.roles.validator import InlineValidator
        from mpilearn.roles.watchdog import Watchdog

        self.config = RunConfig(
            data=DataConfig(batch_size=8, shard="samples"),
            algorithm=AlgorithmConfig(**algorithm),
            epochs=2,
            run_dir=str(tmp_path),
            progress="lines",
        )
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(SAMPLES, 3)).astype("float32"), rng.normal(size=(SAMPLES, 1)).astype("float32")
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(LR), loss="mse")
        self.backend = backends.for_model(model)
        self.comms = local_world(3)
        topology = Topology(3, 1)
        self.history = History(self.config.to_dict())
        timeline = Timeline(0, "master", False)
        workload = Workload(self.config, ArraySource(x, y), topology)
        lead = supervisor.build(
            self.config,
            self.history,
            self.backend,
            workload,
            timeline,
            InlineValidator(model, ValidationReader(ArraySource(x, y), validation_pieces([SAMPLES], 1, 0), 8, 0)),
            Checkpointer(self.config, self.backend, self.history, timeline, tmp_path),
            user_hook=user_hook,
        )
        self.job = Job(
            self.config,
            self.comms[0],
            topology,
            self.backend,
            workload,
            self.history,
            timeline,
            Watchdog(30.0),
            None,
            lead,
        )
        self.weights = np.empty(self.backend.layout.size, dtype=np.float32)
        self.backend.get_weights(self.weights)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from mpilearn.roles.master import run_master

        try:
            lead = self.job.supervisor
            assert lead is not None
            lead.start()
            self.history.start_clock()
            run_master(self.job)
            self.history.finish()
            lead.finish()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            self.error = error
            self.comms[0].end_others()  # the test's waits for a reply end at once

    def __enter__(self) -> "Master":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:  # the test failed: end the master's waits too
            self.comms[1].end_others()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the master loop did not end"
        if self.error is not None and exc[0] is None:
            raise self.error

    def rows(self, count: int) -> list[dict]:
        """The epoch rows, once there are `count` (the master validates after it has replied)."""
        for _ in range(6000):
            if len(self.history.epochs) >= count or not self.thread.is_alive():
                break
            threading.Event().wait(0.01)
        return list(self.history.epochs)

    def exchange(self, worker: int, base_step: int, epoch: int = 0, end: bool = False, gradient: float = 0.0):
        """One update from `worker` computed on the weights of master step `base_step`;
        returns the reply's tag, its master step and its weights."""
        comm: LocalCommunicator = self.comms[worker]
        update, reply = Message(self.backend.layout), Message(self.backend.layout)
        update.trainable[:] = gradient
        update.set(Header.BASE_STEP, base_step)
        update.set(Header.EPOCH, epoch)
        for slot, value in ((Header.SAMPLES, 8), (Header.BATCHES, 1), (Header.LOSS_SUM, 1.0)):
            update.set(slot, value)
        received = comm.irecv(reply.buffer, source=0)
        comm.wait(comm.isend(update.buffer, 0, Tag.UPDATE_EPOCH_END if end else Tag.UPDATE), 30)
        status = comm.wait(received, 30)
        return status.Get_tag(), int(reply.get(Header.BASE_STEP)), reply.payload.copy()


def test_staleness_drops_and_epoch_ends_are_counted_update_by_update(tmp_path: Path) -> None:
    with Master(tmp_path, name="downpour", max_staleness=1) as master:
        start = master.weights.copy()
        n = master.backend.layout.num_trainable
        tag, step, weights = master.exchange(1, base_step=0, gradient=1.0)  # staleness 0: applied
        assert (tag, step) == (Tag.WEIGHTS, 1)
        np.testing.assert_allclose(weights[:n], start[:n] - LR * 1.0, rtol=1e-6)
        assert master.exchange(2, base_step=0)[:2] == (Tag.WEIGHTS, 2)  # staleness 1: applied
        tag, step, dropped = master.exchange(1, base_step=0, gradient=100.0)  # staleness 2 > 1: dropped
        assert (tag, step) == (Tag.WEIGHTS, 2)
        np.testing.assert_array_equal(dropped[:n], weights[:n])  # the dropped gradient moved nothing
        assert master.exchange(1, base_step=2, end=True)[:2] == (Tag.WEIGHTS, 3)  # worker 1 ends epoch 1
        assert master.history.epochs == []  # one worker is not the epoch
        assert master.exchange(2, base_step=1, end=True)[:2] == (Tag.WEIGHTS, 3)  # dropped, but its epoch end counts
        rows = master.rows(1)  # validated after the reply
        assert [r["epoch"] for r in rows] == [1] and "val_loss" in rows[0]
        # The last epoch: each worker's last update is answered STOP, and the loop ends.
        assert master.exchange(1, base_step=3, epoch=1, end=True)[:2] == (Tag.STOP, 4)
        assert master.exchange(2, base_step=4, epoch=1, end=True)[:2] == (Tag.STOP, 5)
    history = master.history
    assert history.staleness == {0: 4, 1: 1, 2: 2}
    assert history.dropped_updates == 2 and history.updates == 5
    assert history.samples_seen == 7 * 8  # dropped updates' samples were still processed
    assert [r["epoch"] for r in history.epochs] == [1, 2] and not history.stopped_early


@pytest.mark.parametrize("name", ["downpour", "sync"])
def test_a_stop_after_an_epoch_answers_every_worker_stop(tmp_path: Path, name: str) -> None:
    asked = []

    def stop_after_first_epoch(row) -> bool:
        asked.append(row["epoch"])
        return True

    with Master(tmp_path, stop_after_first_epoch, name=name) as master:
        if name == "sync":  # one round: both updates, averaged
            replies = _round(master, [(1, 0, 1.0), (2, 0, 3.0)], end=True)
            assert [r[:2] for r in replies] == [(Tag.WEIGHTS, 1), (Tag.WEIGHTS, 1)]
            np.testing.assert_allclose(
                replies[0][2][: master.backend.layout.num_trainable],
                master.weights[: master.backend.layout.num_trainable] - LR * 2.0,
                rtol=1e-6,
            )
            assert [r[:2] for r in _round(master, [(1, 1, 0.0), (2, 1, 0.0)])] == [(Tag.STOP, 2), (Tag.STOP, 2)]
        else:
            assert master.exchange(1, 0, end=True)[0] == Tag.WEIGHTS
            assert master.exchange(2, 1, end=True)[0] == Tag.WEIGHTS  # the epoch ends after this reply
            assert master.exchange(1, 2, epoch=1)[0] == Tag.STOP
            assert master.exchange(2, 2, epoch=1)[0] == Tag.STOP
    assert asked == [1]
    history = master.history
    assert history.stopped_early and [r["epoch"] for r in history.epochs if not r.get("final")] == [1]
    assert history.staleness == ({} if name == "sync" else {0: 3, 1: 1})


def _round(master: Master, updates, end: bool = False):
    """A synchronous round: every worker's update in flight together."""
    results: dict[int, tuple] = {}
    threads = [
        threading.Thread(
            target=lambda w=w, b=b, g=g: results.__setitem__(w, master.exchange(w, b, end=end, gradient=g))
        )
        for w, b, g in updates
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return [results[w] for w, _, _ in updates]
