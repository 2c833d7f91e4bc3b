"""An im2rec list and its image files -> pass-through MXNet RecordIO (.rec + .idx).

Each record is MXNet's image record: an IRHeader (flag 0, the label as float32, the list
index as id, id2 0) followed by the image file's original bytes, or by an RGB JPEG
re-encoding of them when the file is not a plain JPEG (see image_check). The framing is
dmlc RecordIO, as MXNet's RecordIOWriter writes it, so mx.recordio.MXIndexedRecordIO,
mx.io.ImageRecordIter and DALI's readers.mxnet read the files; the .idx has one
`key\\toffset` line per record like MXIndexedRecordIO writes. Records are framed here and
written a chunk at a time with one writev, which costs about a third less per record than
mx.recordio.pack with MXIndexedRecordIO.write_idx (about 20 against 30 us for 60 KB images).

Worker threads read, check and frame the files in chunks while the calling thread writes
them in list order, so a rerun gives byte-identical files; a bounded window of chunks in
flight keeps memory flat however large the dataset is.
"""

import collections
import contextlib
import itertools
import logging
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from resnet_recipe.atomic_files import atomic_path
from resnet_recipe.image_check import AS_IS, REENCODED, REJECTED, check_image
from resnet_recipe.progress import Progress

log = logging.getLogger(__name__)

RECORDIO_MAGIC_WORD = 0xCED7230A
RECORDIO_MAGIC = struct.pack("<I", RECORDIO_MAGIC_WORD)
# A record (or part) starts with the magic word and a length word.
RECORD_START = struct.Struct("<II")
# IRHeader in mx.recordio: flag (uint32), label (float32), id and id2 (uint64).
IMAGE_RECORD_HEADER = struct.Struct("<IfQQ")
# The record length word holds the length in its low 29 bits and the part flag above them.
LENGTH_BITS = 29
MAX_RECORD_BYTES = (1 << LENGTH_BITS) - 1
WHOLE, FIRST, MIDDLE, LAST = 0, 1, 2, 3
# Images per unit of work handed to a thread, and chunks in flight per thread: enough to
# keep every thread busy while the writer catches up, and a bound on memory.
CHUNK_IMAGES = 32
CHUNKS_IN_FLIGHT_PER_THREAD = 4
# Rejected files named in the error message when too many are rejected.
REJECTED_IN_MESSAGE = 10
IOV_MAX = os.sysconf("SC_IOV_MAX")
PROGRESS_SECONDS = 5.0


class ListEntry(NamedTuple):
    index: int
    label: float
    path: str  # relative to the split folder


class TooManyRejected(ValueError):
    """More files failed the image check than the allowed fraction."""


def read_list(lst_path):
    """Yield the ListEntry of each line of an im2rec list (`index\\tlabel\\tpath`)."""
    with open(lst_path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.rstrip("\n").split("\t")
            try:
                if len(fields) != 3:
                    raise ValueError(f"{len(fields)} tab-separated fields")
                yield ListEntry(int(fields[0]), float(fields[1]), fields[2])
            except ValueError as error:
                raise ValueError(
                    f"{lst_path} line {number}: expected index<TAB>label<TAB>path, "
                    f"got {line.rstrip()!r} ({error})"
                ) from None


def count_lines(path):
    """Lines of a text file, the last one counted with or without its newline."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def record_parts(header, image):
    """The pieces of one record in dmlc RecordIO framing, and their total size: magic word,
    length word, payload (header + image), zero padding to a multiple of 4 bytes.

    Like dmlc's RecordIOWriter, a payload that holds the magic word at a 4-byte aligned
    offset is split there into parts (the magic word itself is left out; readers put it
    back), so a reader that scans for record starts never takes image bytes for one.
    """
    length = len(header) + len(image)
    if length > MAX_RECORD_BYTES:
        raise ValueError(f"record of {length} bytes; RecordIO takes at most 2^29 - 1")
    padding = bytes(-length % 4)
    # The header is 24 bytes, so alignment in the image is alignment in the payload.
    if RECORDIO_MAGIC not in header and not magic_words(image).any():
        # By chance about one 110 KB image in 150,000 holds the word (2^-32 per word).
        return [length_word(WHOLE, length), header, image, padding], 8 + length + len(padding)
    payload = header + image
    pieces = []
    start = 0
    for cut in (magic_words(payload).nonzero()[0] * 4).tolist():
        pieces += [length_word(FIRST if start == 0 else MIDDLE, cut - start), payload[start:cut]]
        start = cut + 4
    pieces += [length_word(LAST, length - start), payload[start:], padding]
    return pieces, sum(len(piece) for piece in pieces)


def magic_words(data):
    """For each 4-byte aligned word of data, whether it is the magic word. (A numpy compare
    is about five times faster than bytes.find on JPEG data: 11 against 2 GB/s here.)"""
    return np.frombuffer(data, dtype="<u4", count=len(data) // 4) == RECORDIO_MAGIC_WORD


def length_word(part, length):
    return RECORD_START.pack(RECORDIO_MAGIC_WORD, part << LENGTH_BITS | length)


def image_record(entry, image):
    """RecordIO pieces and size of one image record: IRHeader with the label, the image."""
    header = IMAGE_RECORD_HEADER.pack(0, entry.label, entry.index, 0)
    return record_parts(header, image)


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
    record, size = image_record(entry, checked.data)
    return PackedFile(entry, checked.verdict, checked.reason, len(data), record, size)


def pack_chunk(root, entries, full_decode):
    folder = os.path.join(root, "")
    return [pack_file(folder, entry, full_decode) for entry in entries]


def packed_chunks(root, entries, threads, full_decode):
    """Yield pack_chunk results in list order, using `threads` threads in all.

    The calling thread writes what this yields, so threads - 1 more threads pack, each with
    at most CHUNKS_IN_FLIGHT_PER_THREAD chunks read ahead; with threads=1 the calling thread
    packs too. (With the files in the page cache the work is bound by the GIL, and a thread
    more than the cores only adds contention; threads that wait for a disk overlap.)
    """
    chunks = iter(lambda: list(itertools.islice(entries, CHUNK_IMAGES)), [])
    workers = threads - 1
    if workers < 1:
        for chunk in chunks:
            yield pack_chunk(root, chunk, full_decode)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pack")
    in_flight = collections.deque()
    try:
        for chunk in chunks:
            in_flight.append(pool.submit(pack_chunk, root, chunk, full_decode))
            if len(in_flight) >= workers * CHUNKS_IN_FLIGHT_PER_THREAD:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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


def write_pieces(fd, pieces):
    """Write byte strings to a file descriptor in few system calls and without joining
    them first (a joined chunk would be a fresh multi-megabyte allocation each time)."""
    for start in range(0, len(pieces), IOV_MAX):
        batch = pieces[start : start + IOV_MAX]
        written = os.writev(fd, batch)
        if written < sum(len(piece) for piece in batch):  # short write: finish it plainly
            rest = memoryview(b"".join(batch))[written:]
            while rest:
                rest = rest[os.write(fd, rest) :]


def single_line(text):
    return " ".join(text.split())


def pack_records(
    lst_path,
    root,
    rec_path,
    idx_path,
    rejected_path,
    threads=4,
    max_rejected_fraction=0.0,
    full_decode=False,
):
    """Pack the files of an im2rec list (paths relative to root) into a pass-through .rec
    and its .idx, and list the files not packed, with the reason, in rejected_path
    (`path\\treason`), with `threads` threads in all (see packed_chunks). Returns counts:
    images, packed, reencoded, rejected, bytes_read.

    Raises TooManyRejected, and writes nothing, as soon as more than max_rejected_fraction
    of the list is rejected. full_decode: see image_check.check_image.
    """
    total = count_lines(lst_path)
    if total == 0:
        raise ValueError(f"{lst_path} lists no images")
    allowed = allowed_rejections(total, max_rejected_fraction)
    counts = collections.Counter()
    first_rejected = []
    progress = Progress(log, total, unit="images", interval=PROGRESS_SECONDS, rates=("MB",))
    log.info(
        "packing %d images listed in %s from %s with %d threads", total, lst_path, root, threads
    )
    entries = read_list(lst_path)
    with (
        atomic_path(rec_path) as rec_tmp,
        atomic_path(idx_path) as idx_tmp,
        atomic_path(rejected_path) as rejected_tmp,
        open(rec_tmp, "wb", buffering=0) as rec,
        open(idx_tmp, "w", encoding="utf-8") as idx,
        open(rejected_tmp, "w", encoding="utf-8") as rejected,
        contextlib.closing(packed_chunks(root, entries, threads, full_decode)) as chunks,
    ):
        rejected.write("path\treason\n")
        offset = 0
        for chunk in chunks:
            chunk_bytes = sum(item.bytes_read for item in chunk)
            counts["bytes_read"] += chunk_bytes
            unusual = [item for item in chunk if item.verdict != AS_IS]
            counts[AS_IS] += len(chunk) - len(unusual)
            for item in unusual:
                counts[item.verdict] += 1
                if item.verdict == REJECTED:
                    reason = single_line(item.reason)
                    log.warning("rejected %s: %s", item.entry.path, reason)
                    rejected.write(f"{item.entry.path}\t{reason}\n")
                    if len(first_rejected) < REJECTED_IN_MESSAGE:
                        first_rejected.append((item.entry.path, reason))
                    if counts[REJECTED] > allowed:
                        message = too_many_rejected_message(
                            lst_path, counts, total, max_rejected_fraction, first_rejected
                        )
                        log.error(message)  # the log outlives the outputs of a failed job
                        raise TooManyRejected(message)
                elif item.verdict == REENCODED:
                    log.info("re-encoded %s: %s", item.entry.path, item.reason)
            offset = write_records(rec.fileno(), idx, chunk, offset)
            progress.update(len(chunk), MB=chunk_bytes / 1e6)
        if counts[REJECTED] == total:
            raise ValueError(f"no image of {lst_path} could be packed; see the log")
    seconds = progress.finish()
    summary = {
        "images": total,
        "packed": total - counts[REJECTED],
        "reencoded": counts[REENCODED],
        "rejected": counts[REJECTED],
        "bytes_read": counts["bytes_read"],
    }
    log.info(
        "packed %d of %d images into %s (%d re-encoded), rejected %d; %.1f MB in %.1f s",
        summary["packed"],
        total,
        rec_path,
        summary["reencoded"],
        summary["rejected"],
        summary["bytes_read"] / 1e6,
        seconds,
    )
    return summary


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
