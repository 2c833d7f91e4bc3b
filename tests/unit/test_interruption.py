"""Stop signals, when a position's state is due, and the exit status of a stopped run."""

import os
import signal

import pytest

from resnet_recipe.training import checkpoints, interruption, slurm_job
from resnet_recipe.training.distributed import Membership
from resnet_recipe.workflow_support.progress import run_logged


def test_a_stop_signal_sets_the_flag_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGUSR1)
    with interruption.StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal keeps the first's name
        assert signals.received == "SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) is before


def test_a_position_is_saved_on_a_signal_or_when_the_minutes_have_passed(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(interruption.time, "monotonic", lambda: clock[0])
    signals = interruption.StopSignals()
    positions = interruption.Positions(signals, 0.5, Membership())
    assert positions.due(1) == (None, False)
    clock[0] += 30
    assert positions.due(2) == (None, True)  # 30 s: half a minute since the start
    positions.written()
    assert positions.due(3) == (None, False)
    signals.received = "SIGTERM"
    assert positions.due(4) == ("SIGTERM", True)
    assert positions.stop_after_epoch() == "SIGTERM"
    never = interruption.Positions(interruption.StopSignals(), 0, Membership())
    clock[0] += 1e6
    assert never.due(5) == (None, False)  # 0: no states by time


def test_a_run_stops_once_the_time_ahead_of_its_slurm_jobs_end_has_come(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(interruption.time, "time", lambda: clock[0])
    positions = interruption.Positions(interruption.StopSignals(), 0, Membership(), stop_at=1060)
    assert positions.due(1) == (None, False)
    assert positions.stop_after_epoch() is None
    clock[0] = 1060.0
    assert positions.due(2) == ("the SLURM job's coming end", True)
    assert positions.stop_after_epoch() == "the SLURM job's coming end"


def test_squeue_end_times_in_epoch_seconds_or_none_without_a_limit():
    assert slurm_job.end_from_squeue("1796525850\n") == 1796525850
    assert slurm_job.end_from_squeue("N/A\n") is None
    assert slurm_job.end_from_squeue("") is None


def test_position_folders_order_inside_and_between_epochs(tmp_path):
    names = [
        "epoch-0001",
        "epoch-0002-iteration-000003",
        "epoch-0002",
        "epoch-0001-iteration-000010",
    ]
    for name in names + ["tmp-epoch-0003-x"]:
        (tmp_path / name).mkdir()
    positions = [position for position, _ in checkpoints._positions(str(tmp_path))]
    assert positions == [(0, 10), (1, 0), (1, 3), (2, 0)]
    assert [checkpoints.position_folder(p) for p in positions] == [
        "epoch-0001-iteration-000010",
        "epoch-0001",
        "epoch-0002-iteration-000003",
        "epoch-0002",
    ]


def test_a_stopped_stage_ends_with_the_resume_status_and_a_failure_with_its_error(tmp_path):
    def stopped():
        raise interruption.RunStopped("stopped at epoch 1 iteration 2 on SIGTERM")

    with pytest.raises(SystemExit) as ended:
        run_logged(str(tmp_path / "stopped.log"), stopped)
    assert ended.value.code == interruption.STOPPED_TO_RESUME == 75
    assert "Traceback" not in (tmp_path / "stopped.log").read_text()

    def failed():
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        run_logged(str(tmp_path / "failed.log"), failed)
    assert "Traceback" in (tmp_path / "failed.log").read_text()
