"""Outputs appear complete or not at all: write beside the target, then rename."""

import contextlib
import errno
import json
import os
import shutil
import tempfile

from resnet_recipe.files.user_errors import UserError


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only on success."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get normal modes
    try:
        with full_disk_names(path):
            yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# A write that finds the disk full, the quota spent or the file-size limit reached (RLIMIT_FSIZE,
# with SIGXFSZ ignored) fails with one of these; a file object's write does not name its file.
FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def full_disk_names(path):
    """Turn a full disk (or file-size limit) met while writing `path` into a UserError naming
    it; the caller's temporary file is then removed, so nothing that looks complete stays."""
    try:
        yield
    except OSError as error:
        if error.errno not in FULL_DISK_ERRNOS:
            raise
        # Named by its folder: several outputs may be written there at once (a pack's
        # records, index and rejected list), and the error may be another one's.
        raise UserError(
            f"{os.path.dirname(os.path.abspath(path))}: {os.strerror(error.errno)} while "
            f"writing {os.path.basename(path)} there: free space (or raise the file-size "
            "limit) and run again; only what is missing is made again"
        ) from error


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """open() whose file only appears under `path` once it is closed without error."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def write_json(path, data):
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")


@contextlib.contextmanager
def atomic_directory(path):
    """Yield a temporary folder beside `path`; it replaces `path` only on success."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.chmod(tmp, 0o777 & ~current_umask())
    try:
        with full_disk_names(path):
            yield tmp
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
