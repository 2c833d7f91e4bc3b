"""The one kind of error a user causes and can fix: a bad value, a missing file, too few
GPUs, a full disk, a diverged run. Its message is all the user needs, so the entry points
(the command line and the stage scripts) print it as one line and exit with status 2;
every other exception is a fault of the code and keeps its traceback."""


class UserError(Exception):
    """An error the user can fix; the message names the file or setting and the fix."""
