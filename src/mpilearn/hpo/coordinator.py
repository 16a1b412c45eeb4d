"""Rank 0 of a search: ask Optuna for trials, hand them to idle blocks, turn
their reports into trial.report / should_prune / tell, and write best.json.

The coordinator never spins: between messages it sleeps in the
Communicator's backed-off polling, leaving its core to the blocks.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState

from ..comm import ALIVE_S, Communicator
from ..config import RunConfig
from ..errors import CommunicationError, ConfigError, MpilearnError
from ..interrupt import STOP, Interrupted, signal_name
from ..log import get_logger
from ..rundir import atomic_write_json
from .config import BEST, TRIALS_DIR, SearchConfig
from .layout import Layout
from .protocol import Assignment, HpoTag, Interrupt, Outcome, Progress, Stop
from .settings import apply_settings
from .space import SearchSpace
from .study import FINISHED, count_finished, trial_row


@dataclass
class _Running:
    trial: optuna.Trial
    started: float


def trial_configs(
    base: RunConfig,
    settings: dict[str, Any],
    number: int,
    run_dir: Path,
    folds: Sequence[tuple[tuple[str, ...], tuple[str, ...]]],
) -> tuple[RunConfig, ...]:
    """The RunConfig of each fold of one trial (one config without folds)."""
    config = apply_settings(trial_base(base), settings)
    trial_dir = run_dir / TRIALS_DIR / f"{number:04d}"
    if not folds:
        timeline = str(trial_dir / "timeline.json") if base.timeline else ""
        return (config.replace(run_dir=str(trial_dir), timeline=timeline),)
    configs = []
    for k, (train_files, val_files) in enumerate(folds):
        fold_dir = trial_dir / f"fold-{k}"
        configs.append(
            config.replace(
                data=dataclasses.replace(config.data, train_files=train_files, val_files=val_files),
                run_dir=str(fold_dir),
                timeline=str(fold_dir / "timeline.json") if base.timeline else "",
            )
        )
    return tuple(configs)


def trial_base(base: RunConfig) -> RunConfig:
    """What every trial needs whatever the command line said: a NaN loss
    skips its batch instead of aborting the job (the block then fails the
    trial), validation only after epochs (one report per epoch for pruning),
    log lines rather than several live bars on one terminal, and no
    checkpoint resume (a search resumes trial by trial)."""
    return base.replace(
        skip_bad_batches=True,
        validate_every=0,
        background_validation=False,
        progress="lines",
        checkpoint=dataclasses.replace(base.checkpoint, resume=False),
    )


class Coordinator:
    def __init__(
        self,
        search: SearchConfig,
        layout: Layout,
        control: Communicator,
        study: optuna.Study,
        space: SearchSpace,
        run_dir: Path,
        folds: Sequence[tuple[tuple[str, ...], tuple[str, ...]]],
        storage_url: str,
    ) -> None:
        self.search, self.layout, self.control, self.study = search, layout, control, study
        self.storage_url = storage_url
        self.space, self.run_dir, self.folds = space, run_dir, folds
        self.log = get_logger()
        self.running: dict[int, _Running] = {}  # block -> its trial
        self.fatal: MpilearnError | None = None
        self.stopping = 0  # SIGTERM/SIGINT: no new trial; running ones stop at their next epoch end
        self.interrupted: list[int] = []  # trials stopped by it (they do not count; they run again on resume)
        # Every rank of every block: one that falls silent is named (its beats stop, see Communicator.beat).
        self.block_ranks = [r for r in range(control.size) if layout.block_of(r) is not None]

    # ---- the loop -------------------------------------------------------------------
    def run(self) -> None:
        finished = count_finished(self.study)
        if finished >= self.search.trials:
            self.log.info(
                "the study already has %d finished trials (--trials %d): nothing to run", finished, self.search.trials
            )
        idle = list(range(self.layout.blocks))
        while True:
            if STOP.requested:  # this rank's own SIGTERM/SIGINT, seen before any new trial starts
                self._stop_search(STOP.signum)
            while (
                idle and self.fatal is None and not self.stopping and finished + len(self.running) < self.search.trials
            ):
                if self._start(idle[0]):
                    idle.pop(0)
                else:
                    finished += 1  # told failed before it reached a block
            if not self.running:
                break
            received = self.control.recv_object(
                tag=HpoTag.REPORT,
                timeout=self.control.limit,
                awaited=self.block_ranks,
                what="the search",
                until=lambda: STOP.requested and not self.stopping,
            )
            if received is None:  # this rank's own SIGTERM/SIGINT
                self._stop_search(STOP.signum)
                continue
            self._check_alive()
            message, source, _ = received
            block = self.layout.block_of(source)
            assert block is not None and block in self.running, f"report from rank {source} without a trial"
            if isinstance(message, Progress):
                self._progress(block, message)
            else:
                self._finish(block, message)
                finished += 1
                idle.append(block)
        for block in range(self.layout.blocks):
            self.control.send_object(Stop(self.fatal, self.stopping), self.layout.leader(block), HpoTag.ASSIGN)
        if self.fatal is not None:
            raise self.fatal
        if self.stopping:
            raise Interrupted(self._interrupt_message(count_finished(self.study)), self.stopping).on_every_rank()

    def _check_alive(self) -> None:
        """Reports from busy blocks keep each wait short: name a silent rank of another block all the same."""
        silent = self.control.fallen_silent(self.block_ranks)
        if silent:
            who = ", ".join(f"rank {r} (block {self.layout.block_of(r)})" for r in silent)
            raise CommunicationError(
                f"{who} gave no sign of life for {ALIVE_S:.0f}s during the search: it is stuck, stopped or has exited"
            )

    def _stop_search(self, signum: int) -> None:
        if not self.stopping:
            self.stopping = signum
            self.log.info("%s: no new trial; the running ones stop at their next safe point", signal_name(signum))

    def _interrupt_message(self, finished: int) -> str:
        again = (
            (
                f"; interrupted trial{'s' if len(self.interrupted) > 1 else ''} {', '.join(map(str, self.interrupted))} "
                "will run again"
            )
            if self.interrupted
            else ""
        )
        return (
            f"search interrupted by {signal_name(self.stopping)} after {finished} of {self.search.trials} trials{again}; "
            f"resume with: the same mpilearn optimize command and --resume {self.run_dir}"
        )

    def _start(self, block: int) -> bool:
        """Ask for a trial and send it to `block`; False if it failed at once."""
        try:
            trial, settings = self.space.sample(self.study)
        except MpilearnError as error:  # the user's search_space() is broken: no trial can run
            self.fatal = error
            return False
        trial.set_user_attr("settings", _jsonable(settings))
        try:
            configs = trial_configs(self.search.run, settings, trial.number, self.run_dir, self.folds)
        except ConfigError as error:
            trial.set_user_attr("error", str(error))
            self.study.tell(trial, state=TrialState.FAIL)
            self.log.warning("trial %d FAIL before training: %s (%s)", trial.number, error, _describe(settings))
            return False
        trial.set_user_attr("run_dir", f"{TRIALS_DIR}/{trial.number:04d}")  # relative to the search's directory
        trial.set_user_attr("block", block)
        self.running[block] = _Running(trial, time.perf_counter())
        self.log.info("trial %d -> block %d: %s", trial.number, block, _describe(settings))
        self.control.send_object(Assignment(trial.number, settings, configs), self.layout.leader(block), HpoTag.ASSIGN)
        return True

    def _progress(self, block: int, progress: Progress) -> None:
        trial = self.running[block].trial
        if self.stopping:
            self.control.send_object(Interrupt(self.stopping), self.layout.leader(block), HpoTag.DECISION)
            return
        prune = self.fatal is not None  # a stopping search ends running trials early
        if not prune:
            trial.report(progress.value, progress.epoch)
            prune = trial.should_prune()
        self.control.send_object(prune, self.layout.leader(block), HpoTag.DECISION)

    def _finish(self, block: int, outcome: Outcome) -> None:
        running = self.running.pop(block)
        trial = running.trial
        trial.set_user_attr("epochs", outcome.epochs)
        trial.set_user_attr("seconds", round(time.perf_counter() - running.started, 3))
        state, shown = outcome.state, ""
        if state == "interrupted":
            self._interrupt(trial, outcome.signum)
            self.log.info(
                "trial %d interrupted on block %d after %d epochs: it runs again on resume",
                trial.number,
                block,
                outcome.epochs,
            )
            return
        if self.fatal is not None and state != "fail":
            state, outcome = "fail", dataclasses.replace(outcome, error=f"search stopped: {self.fatal}")
        if len(outcome.fold_values) > 1 and state == "complete" and all(v is not None for v in outcome.fold_values):
            folds = [float(v) for v in outcome.fold_values if v is not None]
            trial.set_user_attr("fold_values", folds)
            trial.set_user_attr("fold_std", statistics.pstdev(folds))  # population std of the K fold values
        if state == "complete" and outcome.value is not None and math.isfinite(outcome.value):
            self.study.tell(trial, outcome.value)
            shown = f"{self.search.metric} {outcome.value:.4g}"
            if len(outcome.fold_values) > 1:
                shown += (
                    f" (std {trial.user_attrs.get('fold_std', float('nan')):.3g} over {len(outcome.fold_values)} folds)"
                )
        elif state == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
            shown = f"after epoch {outcome.epochs}"
        else:
            trial.set_user_attr("error", outcome.error or "no finite objective value")
            self.study.tell(trial, state=TrialState.FAIL)
            shown = outcome.error or "no finite objective value"
            if outcome.fatal and self.fatal is None:
                self.fatal = ConfigError(outcome.error)
        state_name = {"complete": "COMPLETE", "pruned": "PRUNED"}.get(state, "FAIL")
        self.log.info(
            "trial %d %s on block %d: %s (%.1fs)",
            trial.number,
            state_name,
            block,
            shown,
            time.perf_counter() - running.started,
        )

    def _interrupt(self, trial: optuna.Trial, signum: int) -> None:
        """A trial a signal stopped: failed, marked so that it does not count, its point queued again."""
        self._stop_search(signum)
        trial.set_user_attr("error", f"interrupted by {signal_name(signum)}: the search stopped while it ran")
        trial.set_user_attr("interrupted", True)
        self.study.tell(trial, state=TrialState.FAIL)
        if trial.params:
            self.study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
        self.interrupted.append(trial.number)

    # ---- results ----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """best.json: the best trial and every finished trial, as plain JSON."""
        trials = self.study.get_trials(deepcopy=False, states=FINISHED)
        complete = [t for t in trials if t.state is TrialState.COMPLETE]
        best = self.study.best_trial if complete else None
        counts = {state.name.lower(): sum(t.state is state for t in trials) for state in FINISHED}
        return {
            "study": self.search.study_name,
            "storage": self.storage_url,
            "metric": self.search.metric,
            "direction": self.search.goal,
            "sampler": self.search.sampler,
            "pruner": self.search.pruner,
            "n_fold": self.search.n_fold,
            "trials_requested": self.search.trials,
            "counts": {"finished": len(trials), **counts},
            "best": trial_row(best) if best is not None else None,
            "trials": [trial_row(t) for t in sorted(trials, key=lambda t: t.number)],
        }

    def write_best(self) -> dict[str, Any]:
        summary = self.summary()
        atomic_write_json(self.run_dir / BEST, summary)
        return summary


def _jsonable(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in settings.items()}


def _describe(settings: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in settings.items()) or "(no parameters)"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_table(summary: dict[str, Any], limit: int = 20) -> str:
    """The finished trials, best first, as a plain-text table."""
    rows = [r for r in summary["trials"]]
    goal = summary["direction"]
    complete = sorted(
        (r for r in rows if r["state"] == "COMPLETE"), key=lambda r: r["value"], reverse=goal == "maximize"
    )
    others = [r for r in rows if r["state"] != "COMPLETE"]
    shown = (complete + others)[:limit]
    names: list[str] = []
    for row in shown:
        for name in row["settings"]:
            if name not in names:
                names.append(name)
    metric = summary["metric"]
    header = ["trial", "state", metric, *(["fold std"] if summary["n_fold"] > 1 else []), *names, "epochs", "seconds"]
    lines = [header]
    for row in shown:
        value = "" if row["value"] is None else f"{row['value']:.4f}"
        fold = [f"{row['fold_std']:.4f}" if row.get("fold_std") is not None else ""] if summary["n_fold"] > 1 else []
        params = [_fmt(row["settings"].get(n, "")) for n in names]
        seconds = "" if row.get("seconds") is None else f"{row['seconds']:.1f}"
        lines.append([str(row["number"]), row["state"], value, *fold, *params, str(row.get("epochs") or ""), seconds])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join(
        "  ".join(cell.rjust(w) if i != 1 else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
        for line in lines
    )
    if len(complete) + len(others) > limit:
        text += f"\n({len(rows) - limit} more trials in best.json)"
    return text
