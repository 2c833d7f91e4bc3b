"""Which errors end an entry point in one line (files.user_errors); the commands that end
so as processes: stages/test_one_line_errors.py."""

import errno
import logging
import os

import pytest

from resnet_recipe.files.user_errors import UserError, one_line_errors, user_message


def stop(error, capsys, log=None):
    """Raise `error` inside one_line_errors; (exit status, stderr)."""
    with pytest.raises(SystemExit) as stopped, one_line_errors("stage", log):
        raise error
    return stopped.value.code, capsys.readouterr().err


class Kept(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_a_user_error_is_one_line_and_status_2(capsys, monkeypatch):
    monkeypatch.delenv("RESNET_RECIPE_DEBUG", raising=False)
    log, kept = logging.getLogger("test_user_errors.stage"), Kept()
    log.addHandler(kept)
    log.propagate = False  # root's handlers are other tests' (setup_logging), maybe closed
    code, err = stop(UserError("training.epochs: expected an integer,\nnot 'x'"), capsys, log)
    log.removeHandler(kept)
    assert (code, err) == (2, "stage: error: training.epochs: expected an integer,; not 'x'\n")
    assert kept.messages == ["training.epochs: expected an integer,; not 'x'"]


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EFBIG, errno.ENOENT, errno.EACCES])
def test_file_system_errors_about_a_named_file_are_user_errors(number, capsys, monkeypatch):
    monkeypatch.delenv("RESNET_RECIPE_DEBUG", raising=False)
    error = OSError(number, os.strerror(number), "/data/results/train.rec")
    assert stop(error, capsys) == (2, f"stage: error: /data/results/train.rec: {error.strerror}\n")


@pytest.mark.parametrize(
    "error",
    [KeyError("epoch"), ValueError("bad"), OSError(errno.ENOSPC, "no space"), TypeError("x")],
    ids=["key", "plain-value-error", "os-error-without-a-file", "type"],
)
def test_faults_of_the_code_keep_their_traceback(error):
    assert user_message(error) is None
    with pytest.raises(type(error)), one_line_errors("stage"):
        raise error


def test_debugging_shows_a_user_errors_traceback(monkeypatch):
    monkeypatch.setenv("RESNET_RECIPE_DEBUG", "1")
    with pytest.raises(UserError), one_line_errors("stage"):
        raise UserError("gpus: too many")
    monkeypatch.setenv("RESNET_RECIPE_DEBUG", "0")
    with pytest.raises(SystemExit), one_line_errors("stage"):
        raise UserError("gpus: too many")
