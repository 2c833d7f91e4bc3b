"""The attempts file of a run's state folder, and the attempts report.json lists from it."""

import json
import time

import pytest

from resnet_recipe.files.user_errors import UserError
from resnet_recipe.training import attempts
from resnet_recipe.training.interruption import RunStopped


def test_each_start_is_an_attempt_with_its_wall_time_and_end(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "417")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    began = time.time() - 5
    log = attempts.AttemptLog(str(tmp_path), (3, 0), began)
    log.state((3, 40))
    log.end("stopped at epoch 4 iteration 40 on SIGUSR1; state saved in 0.3 s")
    (attempt,) = attempts.listed(str(tmp_path))
    assert attempt["resumed_after"] == [3, 0]
    assert attempt["ended_how"].startswith("stopped at epoch 4 iteration 40 on SIGUSR1")
    assert (attempt["slurm_job"], attempt["slurm_restart"]) == ("417", 2)
    assert 5 <= attempt["wall_seconds"] < 60
    assert attempt["started"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began))


def test_an_attempt_without_an_end_was_killed_and_counts_to_its_last_state(tmp_path):
    began = time.time() - 100
    killed = attempts.AttemptLog(str(tmp_path), (0, 0), began)
    killed.state((1, 0))
    killed.state((1, 25))
    attempts.AttemptLog(str(tmp_path), (1, 25), time.time())  # killed before any state
    first, second = attempts.listed(str(tmp_path))
    assert first["ended_how"] == (
        "killed: no end recorded; its last state was after iteration 25 of epoch 2"
    )
    assert first["wall_seconds"] >= 100
    assert second["ended_how"] == "killed: no end recorded, before it wrote a state"
    assert second["wall_seconds"] == 0


def test_a_later_end_line_wins(tmp_path):
    """An attempt that finished training but failed to write its outputs ends failed."""
    log = attempts.AttemptLog(str(tmp_path), (0, 0), time.time())
    log.end(attempts.FINISHED)
    log.end(attempts.ended_how(OSError(28, "No space left on device")))
    (attempt,) = attempts.listed(str(tmp_path))
    assert attempt["ended_how"] == "failed: OSError: [Errno 28] No space left on device"


def test_how_an_attempt_ended_in_words():
    assert attempts.ended_how(RunStopped("stopped at epoch 1 iteration 2 on SIGTERM")) == (
        "stopped at epoch 1 iteration 2 on SIGTERM"
    )
    assert attempts.ended_how(UserError("run r diverged in epoch 1/1")) == (
        "failed: run r diverged in epoch 1/1"
    )
    # A file-system error about a named file is the user's, as on the command line.
    missing = FileNotFoundError(2, "No such file or directory", "/data/train.rec")
    assert attempts.ended_how(missing) == "failed: /data/train.rec: No such file or directory"


def test_a_torn_last_line_is_skipped_and_a_torn_earlier_one_named(tmp_path):
    attempts.AttemptLog(str(tmp_path), (0, 0), time.time()).state((0, 5))
    path = tmp_path / attempts.ATTEMPTS_FILE
    with open(path, "a") as handle:
        handle.write('{"event": "sta')
    (attempt,) = attempts.listed(str(tmp_path))
    assert attempt["ended_how"].endswith("after iteration 5 of epoch 1")
    path.write_text('{"event": "sta\n' + json.dumps({"event": "end", "time": 0, "how": "x"}))
    with pytest.raises(UserError, match=f"{path}: line 1 is not JSON"):
        attempts.listed(str(tmp_path))


def test_no_attempts_before_the_first(tmp_path):
    assert attempts.listed(str(tmp_path / "state")) == []
