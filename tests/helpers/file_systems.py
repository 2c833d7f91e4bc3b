"""Real small file systems for the full-disk tests: a tmpfs of a given size, mounted for
the duration of a `with` block (the tests run as root, as CI does)."""

import contextlib
import subprocess


@contextlib.contextmanager
def mounted_tmpfs(folder, size):
    """A tmpfs of `size` (mount's syntax: "8k", "1m") mounted on the new folder `folder`."""
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", folder], check=True)
