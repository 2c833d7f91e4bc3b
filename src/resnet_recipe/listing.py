"""Raw image trees -> MXNet im2rec list files (.lst) and the shared label mapping."""

import hashlib
import os


def class_folders(split_dir):
    """Sorted names of the class folders directly under a raw split folder."""
    return sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())


def tree_fingerprint(root):
    """Hex digest of every file's relative path, size and mtime under root.

    Cheap enough to run at every workflow start (one stat per file), and it changes when
    any file is edited, added, removed or renamed.
    """
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            stat = os.stat(path)
            relative = os.path.relpath(path, root)
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
