"""Logging setup for stages and progress lines with rate and ETA for long loops."""

import contextlib
import logging
import sys
import time

from resnet_recipe.files.user_errors import debugging, one_line_errors, user_message

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(path=None, level=logging.INFO):
    """Send the package's log records to a file (a stage's log) or to stderr."""
    handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def format_duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Counts work done and logs rate and ETA at most every `interval` seconds.

    `update(n, **extra)` adds n units; extra values (bytes, loss, ...) are added up and
    reported as rates when they are numbers named in `rates`, else shown as they are.
    """

    def __init__(self, logger, total, unit="items", interval=10.0, rates=(), clock=time.monotonic):
        self.logger = logger
        self.total = total
        self.unit = unit
        self.interval = interval
        self.rates = {name: 0.0 for name in rates}
        self.clock = clock
        self.start = clock()
        self.last_report = self.start
        self.done = 0

    def update(self, n=1, force=False, **values):
        self.done += n
        for name in self.rates:
            self.rates[name] += values.pop(name, 0.0)
        now = self.clock()
        if force or now - self.last_report >= self.interval:
            self.last_report = now
            self.logger.info(self.line(now, values))

    def line(self, now, values=None):
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.done}/{self.total} {self.unit}", f"{rate:.1f} {self.unit}/s"]
        parts += [f"{total / elapsed:.1f} {name}/s" for name, total in self.rates.items()]
        parts += [f"{key} {value}" for key, value in (values or {}).items()]
        if self.total and rate > 0:
            parts.append(f"ETA {format_duration((self.total - self.done) / rate)}")
        parts.append(f"elapsed {format_duration(elapsed)}")
        return ", ".join(parts)

    def finish(self, **values):
        self.update(0, force=True, **values)
        return self.clock() - self.start


@contextlib.contextmanager
def stage_log(log_path, logger_name, stage):
    """Run a stage's block with the package's log going to log_path. A user error ends the
    log and stderr with its one line and exits with status 2 (files.user_errors); any other
    failure's traceback is written to the log too, so the stage log alone tells what went
    wrong. A training run stopped to be resumed exits with its own status, without one."""
    setup_logging(log_path)
    log = logging.getLogger(logger_name)
    with one_line_errors(stage, log):
        try:
            yield
        except BaseException as error:
            stopped = getattr(error, "exit_status", None) is not None  # to be resumed
            if not stopped and (user_message(error) is None or debugging()):
                log.exception("%s failed", stage)
            raise


def run_logged(log_path, function, /, **kwargs):
    """Call a stage function inside stage_log."""
    with stage_log(log_path, function.__module__, function.__name__):
        return function(**kwargs)
