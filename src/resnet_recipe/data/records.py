"""An im2rec list and its image files -> pass-through MXNet RecordIO (.rec + .idx).

Each record is MXNet's image record (see recordio): an IRHeader with the label and the
list index, then the image file's original bytes, or an RGB JPEG re-encoding of them when
the file is not a plain JPEG (see image_check). The .idx has one `key\\toffset` line per
record like MXIndexedRecordIO writes. Records are framed here and written a chunk at a
time with one writev, which costs about a third less per record than mx.recordio.pack with
MXIndexedRecordIO.write_idx (about 20 against 30 us for 60 KB images).

Packing runs in worker processes, one per core: the list is cut into as many contiguous
slices as there are workers, and each worker reads, checks and packs its slice into its
own part files (see part_files), the first worker straight into the outputs. Each further
part's records are appended with a copy inside the kernel as soon as the parts before it
are complete; its index lines get their offsets shifted. Only counts and the names of
unusual files travel to the parent, which logs progress and stops the pack as soon as
too many files are rejected. The outputs are byte-identical for any number of workers,
and a worker holds one chunk of images at a time, so memory does not grow with the
dataset.
"""

import collections
import contextlib
import ctypes
import gc
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import traceback
from typing import NamedTuple

import numpy as np

from resnet_recipe.data.image_check import AS_IS, REENCODED, REJECTED, check_image
from resnet_recipe.files.atomic_files import FULL_DISK_ERRNOS, atomic_path
from resnet_recipe.files.part_files import PartFiles, RecordJoiner, remove_leftovers
from resnet_recipe.files.recordio import (
    IMAGE_RECORD_HEADER,
    MAX_RECORD_BYTES,
    image_record,
    write_pieces,
)
from resnet_recipe.files.user_errors import UserError, user_message
from resnet_recipe.workflow_support.progress import Progress

log = logging.getLogger(__name__)

# Images a worker packs and writes at a time: the most it holds in memory.
CHUNK_IMAGES = 32
# Images a worker process reports to the parent at a time (progress, unusual files).
REPORT_IMAGES = 8 * CHUNK_IMAGES
# The first worker's slice against the others': about what copying a part costs against
# packing it, so that the copy of the second part is done when its worker is.
FIRST_SLICE_SHARE = 0.9
# The fraction of a list's files that may be rejected unless told otherwise (the
# config schema's default of data.max_rejected_fraction is the same).
MAX_REJECTED_FRACTION = 0.001
# Rejected files named in the error message when too many are rejected.
REJECTED_IN_MESSAGE = 10
PROGRESS_SECONDS = 5.0


class ListEntry(NamedTuple):
    index: int
    label: float
    path: str  # relative to the split folder


class ListSlice(NamedTuple):
    """Lines first_line .. first_line + lines - 1 of a list, starting at byte `start`."""

    start: int
    first_line: int
    lines: int


class PackJob(NamedTuple):
    lst_path: str
    root: str
    full_decode: bool


class TooManyRejected(UserError):
    """More files failed the image check than the allowed fraction."""


def read_list(lst_path, part=None):
    """Yield the ListEntry of each line of an im2rec list (`index\\tlabel\\tpath`), or of
    the lines of one ListSlice of it."""
    part = part or ListSlice(0, 1, None)
    with open(lst_path, "rb") as lines:
        lines.seek(part.start)
        for number, raw in enumerate(itertools.islice(lines, part.lines), part.first_line):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
                fields = line.split("\t")
                if len(fields) != 3:
                    raise ValueError(f"{len(fields)} tab-separated fields")
                yield ListEntry(int(fields[0]), float(fields[1]), fields[2])
            except ValueError as error:
                raise UserError(
                    f"{lst_path} line {number}: expected index<TAB>label<TAB>path, "
                    f"got {raw.decode('utf-8', 'replace').rstrip()!r} ({error})"
                ) from None


def line_starts(path):
    """Byte offset of the start of every line of a file (the last line counted with or
    without its newline), as an int64 array: 8 bytes a line, 10 MB for ImageNet's list."""
    starts = [np.zeros(1, dtype=np.int64)]
    position, last = 0, b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n"))
            starts.append(newlines.astype(np.int64) + position + 1)
            position += len(block)
            last = block[-1:]
    starts = np.concatenate(starts)
    return starts[:-1] if last == b"\n" else starts


def list_slices(lst_path, parts):
    """Cut a list into at most `parts` contiguous slices: the first FIRST_SLICE_SHARE of
    the others' line count, so that its worker is done first and its core is free to copy
    the next part while that part's worker still writes (see part_files.RecordJoiner)."""
    starts = line_starts(lst_path)
    total = len(starts)
    weight = FIRST_SLICE_SHARE + parts - 1
    cuts = sorted(
        {0, total} | {int(total * (FIRST_SLICE_SHARE + k - 1) / weight) for k in range(1, parts)}
    )
    return [
        ListSlice(int(starts[first]), first + 1, end - first)
        for first, end in itertools.pairwise(cuts)
        if end > first
    ]


class PackedFile(NamedTuple):
    entry: ListEntry
    verdict: str  # AS_IS, REENCODED or REJECTED
    reason: str
    bytes_read: int
    record: list  # the RecordIO pieces; empty when rejected
    record_size: int


def read_file(path):
    """A file's bytes, read with one system call where the kernel allows (Linux returns at
    most about 2 GB per read)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size)
        while len(data) < size:
            block = os.read(fd, size - len(data))
            if not block:  # the file shrank since fstat
                break
            data += block
    finally:
        os.close(fd)
    return data


def pack_file(folder, entry, full_decode):
    """Read, check and frame one listed file (folder: the root ending in a separator)."""
    try:
        data = read_file(folder + entry.path)
    except OSError as error:
        return PackedFile(entry, REJECTED, f"cannot read: {error.strerror}", 0, [], 0)
    if len(data) > MAX_RECORD_BYTES - IMAGE_RECORD_HEADER.size:
        reason = f"{len(data)} bytes, more than a RecordIO record holds (2^29 - 1 with its header)"
        return PackedFile(entry, REJECTED, reason, len(data), [], 0)
    checked = check_image(data, full_decode)
    if checked.verdict == REJECTED:
        return PackedFile(entry, REJECTED, checked.reason, len(data), [], 0)
    record, size = image_record(entry.label, entry.index, checked.data)
    return PackedFile(entry, checked.verdict, checked.reason, len(data), record, size)


def write_records(fd, idx, chunk, offset):
    """Append the records of a chunk's packed files to the .rec (at offset) and their
    `key\\toffset` lines to the .idx; returns the offset after them."""
    pieces, index_lines = [], []
    for item in chunk:
        if item.verdict != REJECTED:
            pieces += item.record
            index_lines.append(f"{item.entry.index}\t{offset}\n")
            offset += item.record_size
    write_pieces(fd, pieces)
    idx.write("".join(index_lines))
    return offset


def single_line(text):
    return " ".join(text.split())


def pack_slice(job, part, files, report):
    """Pack the entries of one ListSlice into one worker's part files (appending to them);
    after each chunk, report(images, bytes_read, unusual) with unusual the (verdict, path,
    reason) of every file not packed as it is. Returns the bytes of records written."""
    folder = os.path.join(job.root, "")
    entries = read_list(job.lst_path, part)
    offset = 0
    with (
        open(files.rec, "ab", buffering=0) as rec,
        open(files.idx, "a", encoding="utf-8") as idx,
        open(files.rejected, "a", encoding="utf-8") as rejected,
    ):
        for chunk in iter(lambda: list(itertools.islice(entries, CHUNK_IMAGES)), []):
            packed = [pack_file(folder, entry, job.full_decode) for entry in chunk]
            unusual = [
                (item.verdict, item.entry.path, item.reason)
                for item in packed
                if item.verdict != AS_IS
            ]
            rejected.writelines(
                f"{path}\t{single_line(reason)}\n"
                for verdict, path, reason in unusual
                if verdict == REJECTED
            )
            offset = write_records(rec.fileno(), idx, packed, offset)
            report(len(chunk), sum(item.bytes_read for item in packed), unusual)
    return offset


def die_with_parent(parent):
    """Have the kernel kill this process when its parent dies (Linux), so a pack killed
    with SIGKILL leaves no worker writing behind it."""
    with contextlib.suppress(OSError, AttributeError):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def worker_main(sender, parent, job, part, files):
    """A worker process: pack one slice and send its reports, then ("done", bytes) or
    ("failed", error, traceback text) through `sender`."""
    die_with_parent(parent)
    try:
        reports = BatchedReports(sender)
        size = pack_slice(job, part, files, reports.add)
        reports.send()
        sender.send(("done", size))
    except BaseException as error:  # noqa: BLE001 - every failure goes to the parent
        text = traceback.format_exc()
        if isinstance(error, OSError) and error.errno in FULL_DISK_ERRNOS:
            error = UserError(
                f"{os.path.dirname(files.rec) or '.'}: {os.strerror(error.errno)} while packing "
                "into it: free space (or raise the file-size limit) and run again"
            )
        try:
            sender.send(("failed", error, text))
        except Exception:  # the error does not pickle: send its text alone
            sender.send(("failed", RuntimeError(f"{type(error).__name__}: {error}"), text))
    finally:
        sender.close()


class BatchedReports:
    """A worker's chunk reports, sent to the parent REPORT_IMAGES images at a time (a
    message costs the parent about 0.2 ms; per chunk that would be 10% of a core)."""

    def __init__(self, sender):
        self.sender = sender
        self.images, self.bytes_read, self.unusual = 0, 0, []

    def add(self, images, bytes_read, unusual):
        self.images += images
        self.bytes_read += bytes_read
        self.unusual += unusual
        if self.images >= REPORT_IMAGES:
            self.send()

    def send(self):
        if self.images:
            self.sender.send(("chunk", self.images, self.bytes_read, self.unusual))
            self.images, self.bytes_read, self.unusual = 0, 0, []


def run_workers(job, parts, files, tally, joiner):
    """Pack each slice in its own worker process (forked: nothing is imported again), hand
    their reports to tally and their progress to joiner; returns the bytes of records of
    each part."""
    context = multiprocessing.get_context("fork")
    workers, sizes = {}, {}
    # The workers' garbage collector leaves this process's objects alone, so it does not
    # touch (and copy) their pages: in a process with large libraries loaded, a worker's
    # full collection otherwise costs more than a hundred milliseconds.
    gc.freeze()
    try:
        for number, (part, part_files) in enumerate(zip(parts, files, strict=True)):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=worker_main,
                args=(sender, os.getpid(), job, part, part_files),
                name=f"pack-worker-{number}",
                daemon=True,
            )
            process.start()
            sender.close()
            workers[receiver] = (number, process)
        gc.unfreeze()
        while len(sizes) < len(parts):
            for receiver in multiprocessing.connection.wait(
                [conn for conn, (number, _) in workers.items() if number not in sizes]
            ):
                number, process = workers[receiver]
                try:
                    message = receiver.recv()
                except EOFError:
                    process.join()
                    raise RuntimeError(
                        f"packing worker {number} (lines {parts[number].first_line} to "
                        f"{parts[number].first_line + parts[number].lines - 1}) ended "
                        f"without a result, exit code {process.exitcode}"
                    ) from None
                if message[0] == "chunk":
                    tally.add(*message[1:])
                elif message[0] == "done":
                    sizes[number] = message[1]
                else:
                    if user_message(message[1]) is None:  # a fault of the code: its traceback
                        log.error("packing worker %d failed:\n%s", number, message[2])
                    raise message[1]
                joiner.advance(sizes)
    finally:
        gc.unfreeze()
        for receiver, (_, process) in workers.items():
            if process.is_alive():
                process.kill()
            process.join()
            receiver.close()
    return [sizes[number] for number in range(len(parts))]


class Tally:
    """What the workers report: counts, progress lines, the log lines of re-encoded and
    rejected files, and the stop when more files are rejected than allowed."""

    def __init__(self, lst_path, total, max_fraction):
        self.lst_path = lst_path
        self.total = total
        self.max_fraction = max_fraction
        self.allowed = allowed_rejections(total, max_fraction)
        self.counts = collections.Counter()
        self.first_rejected = []
        self.progress = Progress(
            log, total, unit="images", interval=PROGRESS_SECONDS, rates=("MB",)
        )

    def add(self, images, bytes_read, unusual):
        self.counts["bytes_read"] += bytes_read
        self.counts[AS_IS] += images - len(unusual)
        for verdict, path, reason in unusual:
            self.counts[verdict] += 1
            if verdict == REENCODED:
                log.info("re-encoded %s: %s", path, reason)
                continue
            reason = single_line(reason)
            log.warning("rejected %s: %s", path, reason)
            if len(self.first_rejected) < REJECTED_IN_MESSAGE:
                self.first_rejected.append((path, reason))
            if self.counts[REJECTED] > self.allowed:
                message = too_many_rejected_message(
                    self.lst_path, self.counts, self.total, self.max_fraction, self.first_rejected
                )
                log.error(message)  # the log outlives the outputs of a failed job
                raise TooManyRejected(message)
        self.progress.update(images, MB=bytes_read / 1e6)

    def finish(self, rec_path):
        """Log the last progress line and the summary; return the counts."""
        seconds = self.progress.finish()
        counts = self.counts
        summary = {
            "images": self.total,
            "packed": self.total - counts[REJECTED],
            "reencoded": counts[REENCODED],
            "rejected": counts[REJECTED],
            "bytes_read": counts["bytes_read"],
        }
        log.info(
            "packed %d of %d images into %s (%d re-encoded), rejected %d; %.1f MB in %.1f s",
            summary["packed"],
            self.total,
            rec_path,
            summary["reencoded"],
            summary["rejected"],
            summary["bytes_read"] / 1e6,
            seconds,
        )
        return summary


def pack_records(
    lst_path,
    root,
    rec_path,
    idx_path,
    rejected_path,
    workers=4,
    max_rejected_fraction=MAX_REJECTED_FRACTION,
    full_decode=False,
):
    """Pack the files of an im2rec list (paths relative to root) into a pass-through .rec
    and its .idx, and list the files not packed, with the reason, in rejected_path
    (`path\\treason`), with `workers` processes (one packs in this process). Returns
    counts: images, packed, reencoded, rejected, bytes_read.

    Raises TooManyRejected, and writes nothing, as soon as more than max_rejected_fraction
    of the list is rejected. full_decode: see image_check.check_image.
    """
    parts = list_slices(lst_path, max(1, workers))
    total = sum(part.lines for part in parts)
    if total == 0:
        raise UserError(f"{lst_path} lists no images")
    job = PackJob(os.fspath(lst_path), os.fspath(root), full_decode)
    tally = Tally(lst_path, total, max_rejected_fraction)
    log.info(
        "packing %d images listed in %s from %s with %d worker processes",
        total,
        lst_path,
        root,
        len(parts),
    )
    remove_leftovers([rec_path, idx_path, rejected_path])
    with (
        atomic_path(rec_path) as rec_tmp,
        atomic_path(idx_path) as idx_tmp,
        atomic_path(rejected_path) as rejected_tmp,
    ):
        with open(rejected_tmp, "w", encoding="utf-8") as rejected:
            rejected.write("path\treason\n")
        outputs = PartFiles(rec_tmp, idx_tmp, rejected_tmp)
        with RecordJoiner(outputs, len(parts)) as joiner:
            if len(parts) == 1:
                sizes = [pack_slice(job, parts[0], outputs, tally.add)]
            else:
                sizes = run_workers(job, parts, joiner.files, tally, joiner)
            if tally.counts[REJECTED] == total:
                raise UserError(f"no image of {lst_path} could be packed; see the log")
            joiner.finish(sizes)
    return tally.finish(rec_path)


def allowed_rejections(total, max_fraction):
    """The most rejected files out of total whose fraction is at most max_fraction (exact
    where max_fraction * total is off by a rounding error, as 0.29 * 100 is)."""
    allowed = int(max_fraction * total)
    return allowed + 1 if (allowed + 1) / total <= max_fraction else allowed


def too_many_rejected_message(lst_path, counts, total, max_fraction, first_rejected):
    rejected = counts[REJECTED]
    checked = rejected + counts[AS_IS] + counts[REENCODED]
    examples = "; ".join(f"{path} ({reason})" for path, reason in first_rejected)
    return (
        f"{rejected} of the {total} images in {lst_path} are rejected "
        f"(fraction {rejected / total:.4g}), more than max_rejected_fraction={max_fraction:g} "
        f"allows ({allowed_rejections(total, max_fraction)} images); stopped after checking "
        f"{checked}. First rejected: {examples}"
    )
