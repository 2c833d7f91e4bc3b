"""Stopping a run to resume it later: stop signals, mid-epoch states by time, and the exit
status that tells such a stop apart from a failure.

SIGTERM (`kill`, SLURM at a time limit or on preemption), SIGUSR1 (what `sbatch
--signal=USR1@N` sends N seconds before the limit) and SIGINT (Ctrl-C) only set a flag
here; the training loop reads it after each iteration, writes the state of that position
and raises RunStopped, which the stage scripts and the command line turn into the exit
status STOPPED_TO_RESUME. Running the same job again resumes at that iteration. Inside a
SLURM job the run stops the same way at a set time ahead of the job's end (slurm_job.py).

The workers of a run over several nodes must stop (and write a state by time) at the same
iteration: they agree through one sum over the kvstore every training.log_interval
iterations, where the loop waits for its devices anyway; a run of one process decides
after every iteration without any such sum.
"""

import logging
import signal
import threading
import time

log = logging.getLogger(__name__)

# "Stopped to be resumed": EX_TEMPFAIL of sysexits.h (a temporary failure; try again); every
# other non-zero status is a failure.
STOPPED_TO_RESUME = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class RunStopped(Exception):
    """The run stopped on a signal after writing its state: running it again resumes."""

    exit_status = STOPPED_TO_RESUME


class StopSignals:
    """While entered, the STOP_SIGNALS set `received` (the first signal's name) instead of
    ending the process; the previous handlers come back on exit. Outside the main thread,
    where Python cannot install handlers, it only holds `received` (never set)."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signal.Signals(signum).name
            log.info("%s received: stopping after this iteration", self.received)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


class Positions:
    """When the training loop writes the state of its position inside an epoch: on a stop
    signal or once the epoch seconds `stop_at` have come (the time ahead of a SLURM job's
    end, slurm_job.stop_time; None: no such time), and then stops; and every
    `every_minutes` minutes (0: never) since the last state written. `membership`
    (distributed.Membership) makes every worker decide alike."""

    def __init__(self, signals, every_minutes, membership, agree_every=1, stop_at=None):
        self.signals = signals
        self.stop_at = stop_at
        self.every_seconds = every_minutes * 60
        self.membership = membership
        self.agree_every = 1 if membership.workers == 1 else agree_every
        self.last_written = time.monotonic()

    def written(self):
        """A state was just written (mid-epoch or at the end of an epoch)."""
        self.last_written = time.monotonic()

    def due(self, batch_index):
        """(stop, save) after iteration batch_index of an epoch: whether to stop (the name
        of the signal, None otherwise) and whether to write the position's state."""
        if batch_index % self.agree_every:
            return None, False
        stop = self._stop_here()
        save = bool(self.every_seconds) and (
            time.monotonic() - self.last_written >= self.every_seconds
        )
        if self.membership.workers > 1:
            stop, save = self._agree(stop, save)
        return self._signal_name(stop), stop or save

    def stop_after_epoch(self):
        """At the end of an epoch (its state written): the stop signal's name when any
        worker got one, None otherwise."""
        stop = self._stop_here()
        if self.membership.workers > 1:
            stop, _ = self._agree(stop, False)
        return self._signal_name(stop)

    def _stop_here(self):
        """Whether this process got a stop signal or its stop time has come."""
        return self.signals.received is not None or self._job_ending()

    def _job_ending(self):
        return self.stop_at is not None and time.time() >= self.stop_at

    def _signal_name(self, stop):
        """What the stop is on, for the log line: the signal, or the job's end."""
        if not stop:
            return None
        if self.signals.received:
            return self.signals.received
        if self._job_ending():
            return "the SLURM job's coming end"
        return "a stop of another worker"

    def _agree(self, stop, save):
        """Stop when any worker got a signal; save when the first worker's clock says so."""
        own_save = save and self.membership.rank == 0
        stops, saves = self.membership.sum_over_workers("stop", [float(stop), float(own_save)])
        return stops > 0, saves > 0


def stop_message(epoch, batch_index, signal_name, seconds):
    return (
        f"stopped at epoch {epoch} iteration {batch_index} on {signal_name}; state saved in "
        f"{seconds:.1f} s"
    )
