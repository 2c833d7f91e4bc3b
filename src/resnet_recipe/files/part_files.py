"""The part files of a pack in worker processes: where they go, how they join the outputs.

Worker k packs the k-th slice of the list into its own part (records, index lines with
offsets from the part's start, rejected rows); worker 0's part is the outputs themselves.
Once every part before part k is complete, part k's records are appended to the output
with copy_file_range, which copies inside the kernel (or shares the blocks where the file
system can), while its worker may still be writing it. The index lines are appended with
their offsets moved by the records before them, the rejected rows as they are.
"""

import contextlib
import errno
import glob
import logging
import os
import tempfile
from typing import NamedTuple

log = logging.getLogger(__name__)

# copy_file_range's errors when the kernel or file system cannot copy between the files.
COPY_UNSUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}
COPY_BLOCK = 1 << 20


class PartFiles(NamedTuple):
    """Where one worker writes: records, index lines and rejected rows."""

    rec: str
    idx: str
    rejected: str


def new_part_files(outputs, number):
    """Hidden files beside the outputs for part `number`, named after them so that
    remove_leftovers finds them after a killed pack."""
    paths = []
    for path in outputs:
        folder, name = os.path.split(path)
        fd, part = tempfile.mkstemp(dir=folder, prefix=f"{name}.part{number}.", suffix=".tmp")
        os.close(fd)
        paths.append(part)
    return PartFiles(*paths)


def remove_leftovers(paths):
    """Remove temporaries beside the outputs left by a pack that was killed (atomic_path's
    `.name.*.tmp` files, and the parts named after those). A workflow runs one job per
    output at a time, so no running pack owns them."""
    for path in paths:
        folder, name = os.path.split(os.path.abspath(path))
        pattern = os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")
        for leftover in glob.glob(pattern):
            log.info("removing %s, left by an earlier pack that did not finish", leftover)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


class RecordJoiner:
    """Joins the parts of `parts` workers to the outputs (temporary paths), appending each
    part's records as soon as the parts before it are complete; removes the part files
    when it is closed."""

    def __init__(self, outputs, parts):
        self.outputs = outputs
        self.files = [outputs]
        self.rec = None  # the output's descriptor, opened once part 0 is complete
        self.next = 1  # the part whose records are being appended
        self.copied = 0  # bytes of it appended so far
        try:
            self.files += [new_part_files(outputs, number) for number in range(1, parts)]
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self.rec is not None:
            os.close(self.rec)
            self.rec = None
        for part in self.files[1:]:
            for path in part:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def advance(self, sizes):
        """Append what can be appended now; sizes: {part: record bytes} of finished parts."""
        while self.next < len(self.files) and all(k in sizes for k in range(self.next)):
            if self.rec is None:
                self.rec = os.open(self.outputs.rec, os.O_WRONLY)  # O_APPEND would fail
                os.lseek(self.rec, 0, os.SEEK_END)
            part = self.files[self.next].rec
            end = sizes.get(self.next, os.path.getsize(part))
            self.copied += copy_range(part, self.rec, self.copied, end - self.copied)
            if self.next not in sizes:
                return
            self.next, self.copied = self.next + 1, 0

    def finish(self, sizes):
        """Append the rest: records, then every part's index lines and rejected rows."""
        sizes = dict(enumerate(sizes))
        self.advance(sizes)
        base = sizes[0]
        with (
            open(self.outputs.idx, "a", encoding="utf-8") as idx,
            open(self.outputs.rejected, "a", encoding="utf-8") as rejected,
        ):
            for number, part in enumerate(self.files[1:], 1):
                with open(part.idx, encoding="utf-8") as lines:
                    for block in iter(lambda: lines.readlines(1 << 20), []):
                        idx.writelines(shifted_index_lines(block, base))
                with open(part.rejected, encoding="utf-8") as rows:
                    for block in iter(lambda: rows.read(1 << 20), ""):
                        rejected.write(block)
                base += sizes[number]


def shifted_index_lines(lines, base):
    for line in lines:
        key, offset = line.split("\t")
        yield f"{key}\t{int(offset) + base}\n"


def copy_range(path, out_fd, start, length):
    """Append `length` bytes of a file from `start` at out_fd's position without reading
    them into this process where the kernel can (copy_file_range); returns the bytes."""
    with open(path, "rb") as source:
        done = 0
        try:
            while done < length:
                step = os.copy_file_range(
                    source.fileno(), out_fd, length - done, offset_src=start + done
                )
                if step == 0:
                    raise OSError(f"{path} ended before byte {start + length}")
                done += step
        except OSError as error:
            if error.errno not in COPY_UNSUPPORTED:
                raise
            source.seek(start + done)
            while done < length:
                block = source.read(min(COPY_BLOCK, length - done))
                view = memoryview(block)
                while view:
                    view = view[os.write(out_fd, view) :]
                done += len(block)
    return done
