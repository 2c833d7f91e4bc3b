"""The attempts of a run: each start of its training (the first, and every resume after a
stop, a kill or a failure), when it began and ended, where it resumed, how it ended and,
inside a SLURM job, which job and restart it was. The run's report.json lists them.

    log = AttemptLog(state_dir, resumed_after, started)  # this attempt, begun at `started`
    log.state(position)                          # a position's state was written
    log.end("stopped at epoch 2 iteration 10 on SIGTERM; ...")  # or "finished", "failed: ..."
    listed(state_dir)                            # every attempt, for report.json

The first worker appends one JSON line per event to attempts.jsonl in the run's state
folder, which outlives failed and stopped jobs: a start, each state written, and the end.
An attempt killed without warning (kill -9, a lost node, a job killed at its time limit)
writes no end: it is listed as killed, and its wall time runs to its last state, the
last moment it is known to have reached (what it did after that is lost and done again).
"""

import json
import logging
import os
import socket
import time

from resnet_recipe.files.user_errors import UserError, user_message
from resnet_recipe.training import slurm_job
from resnet_recipe.training.checkpoints import position_text
from resnet_recipe.training.interruption import RunStopped

log = logging.getLogger(__name__)

ATTEMPTS_FILE = "attempts.jsonl"
FINISHED = "finished"


class AttemptLog:
    """This attempt's lines in the attempts file of the state folder `state_dir`; its start
    is written at once (the folder must exist). resumed_after: the position it resumes
    after, (epochs finished, iterations into the next), (0, 0) for a fresh start;
    started: when the attempt began (time.time())."""

    def __init__(self, state_dir, resumed_after, started):
        self.path = os.path.join(state_dir, ATTEMPTS_FILE)
        self._write(
            "start",
            started,
            resumed_after=list(resumed_after),
            host=socket.gethostname(),
            slurm_job=os.environ.get(slurm_job.JOB_ID),
            slurm_restart=int(os.environ.get(slurm_job.RESTART_COUNT) or 0),
        )

    def state(self, position):
        """The state of `position` (epochs finished, iterations into the next) is written."""
        self._write("state", time.time(), position=list(position))

    def end(self, how):
        """The attempt ends: FINISHED, a stop's message or a failure's."""
        self._write("end", time.time(), how=how)

    def _write(self, event, when, **fields):
        # One line per write, handed to the system at once: a killed process leaves whole
        # lines, or a torn last one. No fsync, as for the states themselves: under a
        # loaded file system it cost tenths of a second between epochs.
        line = json.dumps({"event": event, "time": when, **fields}) + "\n"
        with open(self.path, "a") as handle:
            handle.write(line)


def ended_how(error):
    """An attempt's end in words, from the exception that ended it: a stop's own message
    (interruption.RunStopped), or the failure: the user's one line (user_errors), or the
    exception of a fault of the code."""
    if isinstance(error, RunStopped):
        return str(error)
    message = user_message(error)
    return f"failed: {message if message is not None else f'{type(error).__name__}: {error}'}"


def listed(state_dir):
    """Every attempt of the run whose state folder is `state_dir`, oldest first: {attempt,
    started, ended (ISO 8601 UTC), wall_seconds, resumed_after ([epochs finished,
    iterations into the next]), ended_how, host, slurm_job, slurm_restart}."""
    attempts = []
    for event in _events(os.path.join(state_dir, ATTEMPTS_FILE)):
        if event["event"] == "start":
            attempts.append(_begun(len(attempts) + 1, event))
        elif attempts:
            _advance(attempts[-1], event)
    return [_closed(attempt) for attempt in attempts]


def _begun(number, start):
    fields = ("resumed_after", "host", "slurm_job", "slurm_restart")
    return {
        "attempt": number,
        "started": start["time"],
        "ended": start["time"],
        "ended_how": None,
        **{name: start[name] for name in fields},
        "last_state": None,
    }


def _advance(attempt, event):
    attempt["ended"] = event["time"]
    if event["event"] == "state":
        attempt["last_state"] = event["position"]
    else:
        attempt["ended_how"] = event["how"]


def _closed(attempt):
    """An attempt as report.json lists it; one without an end line was killed."""
    last_state = attempt.pop("last_state")
    if attempt["ended_how"] is None:
        attempt["ended_how"] = (
            f"killed: no end recorded; its last state was after {position_text(last_state)}"
            if last_state
            else "killed: no end recorded, before it wrote a state"
        )
    attempt["wall_seconds"] = round(attempt["ended"] - attempt["started"], 3)
    for name in ("started", "ended"):
        attempt[name] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(attempt[name]))
    return attempt


def _events(path):
    """The lines of the attempts file (none before the first attempt); a torn last line,
    left by a kill in the middle of a write, is skipped with a warning."""
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return []
    events = []
    for number, line in enumerate(lines, 1):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise UserError(f"{path}: line {number} is not JSON") from None
            log.warning("%s: line %d is torn (a kill while it was written); skipped", path, number)
    return events
