"""The errors a user causes and can fix, and how an entry point ends on one.

A bad value, a missing file, too few GPUs, a full disk, a diverged run: the message names
the file or setting and the fix, and a traceback in front of it would read as a crash. The
entry points (the command line and the stage scripts) therefore print it as one line on
stderr (and at the end of the stage's log) and exit with status 2. Every other exception is
a fault of the code and keeps its traceback; RESNET_RECIPE_DEBUG=1 (the command line's
--debug) shows the traceback of a user error too.
"""

import contextlib
import errno
import os
import sys

DEBUG_VARIABLE = "RESNET_RECIPE_DEBUG"
USER_ERROR_STATUS = 2

# The errors of the file system about a named file that the user causes or fixes (a missing
# or unreadable input, a full disk or quota, a file-size limit): OSErrors with these numbers
# and a file name are user errors, wherever they are raised.
FILE_SYSTEM_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
    }
)


class UserError(ValueError):
    """An error the user can fix; the message names the file or setting and the fix.

    A ValueError, as most are bad values, so that code which tries a value and catches
    ValueError (the settings' type conversion) catches these too."""


def user_message(error):
    """The one line that tells the user what to fix, or None for a fault of the code."""
    if isinstance(error, UserError):
        text = str(error)
    elif (
        isinstance(error, OSError)
        and error.errno in FILE_SYSTEM_ERRNOS
        and error.filename is not None
    ):
        text = f"{os.fsdecode(error.filename)}: {error.strerror}"
    else:
        return None
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def debugging():
    """Whether user errors show their traceback (RESNET_RECIPE_DEBUG set, and not 0)."""
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


@contextlib.contextmanager
def one_line_errors(program, log=None):
    """Run an entry point's block: a user error ends the process with status 2 and its
    message as one line on stderr, also logged to `log` (a logger writing the stage's
    log file) so that the log ends with it. An exception with an `exit_status` (a training
    run stopped to be resumed) is no error: the process ends with that status. Other
    exceptions pass unchanged."""
    try:
        yield
    except Exception as error:
        exit_status = getattr(error, "exit_status", None)
        if exit_status is not None:
            print(f"{program}: {error}", file=sys.stderr, flush=True)
            raise SystemExit(exit_status) from None
        message = user_message(error)
        if message is None or debugging():
            raise
        if log is not None:
            log.error("%s", message)
        print(f"{program}: error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(USER_ERROR_STATUS) from None
