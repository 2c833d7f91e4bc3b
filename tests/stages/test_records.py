"""Packing: RecordIO that MXNet and DALI read back, rejected files, reruns, failures."""

import io
import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers.images import jpeg_holding_the_magic_word, tiny_image_bytes
from PIL import Image

from resnet_recipe.data import records
from resnet_recipe.data.image_check import AS_IS, REJECTED, check_image
from resnet_recipe.data.records import TooManyRejected, pack_records

# path -> (label, bytes); the labels are those of the class folders c0, c1, c2.
FILES = {
    "c0/plain.JPEG": (0, tiny_image_bytes("jpeg", seed=1)),
    "c0/progressive.JPEG": (0, tiny_image_bytes("progressive", seed=2)),
    "c0/truncated.JPEG": (0, tiny_image_bytes("jpeg", seed=3)[:-40]),
    "c1/nested/deeper.JPEG": (1, tiny_image_bytes("jpeg", size=(24, 36), seed=4)),
    "c1/png.JPEG": (1, tiny_image_bytes("png", seed=5)),
    "c1/cmyk.JPEG": (1, tiny_image_bytes("cmyk", seed=6)),
    "c1/text.JPEG": (1, b"just some text\n"),
    "c2/grayscale.JPEG": (2, tiny_image_bytes("grayscale", seed=8)),
    "c2/magic.JPEG": (2, jpeg_holding_the_magic_word()),
    "c2/empty.JPEG": (2, b""),
    "c2/wide.JPEG": (2, tiny_image_bytes("jpeg", size=(48, 20), seed=9)),
}
# Listed but not on disk.
MISSING = "c2/missing.JPEG"
REJECTED_REASONS = {
    "c0/truncated.JPEG": "truncated JPEG",
    "c1/text.JPEG": "not an image",
    "c2/empty.JPEG": "empty file (0 bytes)",
    MISSING: "cannot read: No such file or directory",
}
PACKED = [path for path in FILES if path not in REJECTED_REASONS]


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """The raw split folder and its list (in a mixed order, as a shuffled train list)."""
    root = tmp_path_factory.mktemp("split")
    for path, (_, data) in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    order = [*FILES, MISSING][::-1]
    lst = root.parent / f"{root.name}.lst"
    lst.write_text(
        "".join(f"{index}\t{label_of(path)}\t{path}\n" for index, path in enumerate(order))
    )
    return root, lst, order


def label_of(path):
    return int(path[1])


@pytest.fixture(scope="module")
def packed(split, tmp_path_factory):
    root, lst, order = split
    out = tmp_path_factory.mktemp("packed")
    paths = {kind: str(out / f"split.{kind}") for kind in ("rec", "idx", "rejected.tsv")}
    summary = pack_records(lst, root, paths["rec"], paths["idx"], paths["rejected.tsv"], 2, 0.5)
    packed_order = [path for path in order if path in PACKED]
    return paths, summary, packed_order, order


def pack_to(split, out, workers=2, max_rejected_fraction=0.5):
    root, lst, _ = split
    paths = [out / f"split.{kind}" for kind in ("rec", "idx", "rejected.tsv")]
    pack_records(lst, root, *paths, workers, max_rejected_fraction)
    return paths


def pillow_rgb(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def assert_same_picture(decoded, original_bytes):
    """Same pixels within JPEG tolerance."""
    expected = pillow_rgb(original_bytes)
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(np.int16) - expected).mean() < 3.0


def test_summary_counts(packed):
    _, summary, _, order = packed
    assert summary["images"] == len(order)
    assert summary["packed"] == len(PACKED)
    assert summary["reencoded"] == 3  # png, cmyk, grayscale
    assert summary["rejected"] == len(REJECTED_REASONS)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_records_are_byte_identical_to_mxnets_own_writer(split, packed, tmp_path, workers):
    """Same .rec and .idx as mx.recordio.MXIndexedRecordIO writes from the same records,
    including the record split around the aligned magic words, for any worker count."""
    import mxnet as mx

    _, _, packed_order, order = packed
    (tmp_path / "ours").mkdir()
    rec, idx, _ = pack_to(split, tmp_path / "ours", workers=workers)
    paths = {"rec": rec, "idx": idx}
    writer = mx.recordio.MXIndexedRecordIO(str(tmp_path / "mx.idx"), str(tmp_path / "mx.rec"), "w")
    for path in packed_order:
        payload = check_image(FILES[path][1]).data
        header = mx.recordio.IRHeader(0, float(label_of(path)), order.index(path), 0)
        writer.write_idx(order.index(path), mx.recordio.pack(header, payload))
    writer.close()
    assert (tmp_path / "mx.rec").read_bytes() == open(paths["rec"], "rb").read()
    assert (tmp_path / "mx.idx").read_bytes() == open(paths["idx"], "rb").read()


def test_round_trip_with_mx_recordio(packed):
    import mxnet as mx

    paths, _, packed_order, order = packed
    reader = mx.recordio.MXIndexedRecordIO(paths["idx"], paths["rec"], "r")
    assert reader.keys == [order.index(path) for path in packed_order]
    for path in packed_order:
        header, image = mx.recordio.unpack(reader.read_idx(order.index(path)))
        assert (header.flag, header.label, header.id, header.id2) == (
            0,
            label_of(path),
            order.index(path),
            0,
        )
        original = FILES[path][1]
        if check_image(original).verdict == AS_IS:
            assert image == original
        else:
            assert_same_picture(pillow_rgb(image), original)
    reader.close()


def test_round_trip_with_dali(packed):
    from nvidia.dali import fn, pipeline_def, types

    paths, _, packed_order, _ = packed

    @pipeline_def(batch_size=len(packed_order), num_threads=1, device_id=None)
    def read_all():
        jpegs, labels = fn.readers.mxnet(
            path=[paths["rec"]], index_path=[paths["idx"]], random_shuffle=False, name="Reader"
        )
        return jpegs, labels, fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)

    pipeline = read_all()
    pipeline.build()
    assert pipeline.epoch_size("Reader") == len(packed_order)
    jpegs, labels, images = pipeline.run()
    for i, path in enumerate(packed_order):
        assert float(labels.at(i)[0]) == label_of(path)
        original = FILES[path][1]
        if check_image(original).verdict == AS_IS:
            assert jpegs.at(i).tobytes() == original
        assert_same_picture(images.at(i), original)


def test_image_record_iter_reads_every_record(packed):
    import mxnet as mx

    paths, _, packed_order, _ = packed
    batches = mx.io.ImageRecordIter(
        path_imgrec=paths["rec"],
        path_imgidx=paths["idx"],
        data_shape=(3, 16, 16),
        resize=16,
        batch_size=4,
        shuffle=False,
        round_batch=False,
    )
    labels = []
    for batch in batches:
        assert batch.data[0].shape == (4, 3, 16, 16)
        labels += batch.label[0].asnumpy()[: 4 - batch.pad].tolist()
    assert labels == [label_of(path) for path in packed_order]


def test_rejected_files_are_listed_with_their_reason(packed):
    paths, _, _, order = packed
    lines = open(paths["rejected.tsv"]).read().splitlines()
    assert lines[0] == "path\treason"
    rows = [line.split("\t") for line in lines[1:]]
    assert [path for path, _ in rows] == [path for path in order if path in REJECTED_REASONS]
    for path, reason in rows:
        assert reason.startswith(REJECTED_REASONS[path]), (path, reason)


def test_every_worker_count_writes_the_same_files(split, packed, tmp_path):
    """1 to 12 workers (one per image at most), and a rerun: byte-identical .rec, .idx and
    rejected.tsv."""
    paths, _, _, order = packed
    old_paths = (paths["rec"], paths["idx"], paths["rejected.tsv"])
    for workers in (1, 2, 3, 5, len(order), 40):
        (tmp_path / str(workers)).mkdir()
        again = pack_to(split, tmp_path / str(workers), workers=workers)
        for new, old in zip(again, old_paths, strict=True):
            assert new.read_bytes() == open(old, "rb").read(), (workers, new.name)
        assert sorted(os.listdir(tmp_path / str(workers))) == sorted(p.name for p in again)


@pytest.mark.parametrize("workers", [2, 3])
def test_each_workers_part_holds_a_rejected_file(split, tmp_path, workers):
    """The list is cut so that every worker rejects a file; rejected.tsv still lists them
    in list order."""
    _, lst, order = split
    parts = records.list_slices(lst, workers)
    assert len(parts) == workers
    assert sum(part.lines for part in parts) == len(order)
    assert [part.first_line for part in parts[1:]] == [
        part.first_line + part.lines for part in parts[:-1]
    ]
    for part in parts:
        mine = order[part.first_line - 1 : part.first_line - 1 + part.lines]
        assert any(path in REJECTED_REASONS for path in mine), part
    _, _, rejected = pack_to(split, tmp_path, workers=workers)
    rows = [line.split("\t")[0] for line in rejected.read_text().splitlines()[1:]]
    assert rows == [path for path in order if path in REJECTED_REASONS]


def test_too_many_rejected_fails_naming_counts_and_files_and_writes_nothing(split, tmp_path):
    with pytest.raises(TooManyRejected) as failure:
        pack_to(split, tmp_path, max_rejected_fraction=0.2)
    message = str(failure.value)
    total = len(FILES) + 1
    assert f"of the {total} images" in message
    assert "max_rejected_fraction=0.2 allows (2 images)" in message
    assert "fraction 0.25" in message  # stopped at the third of four rejected files
    assert "c2/missing.JPEG (cannot read: No such file or directory)" in message
    assert "c2/empty.JPEG (empty file (0 bytes))" in message
    assert os.listdir(tmp_path) == []  # no outputs, no temporary files


def test_progress_and_summary_are_logged(split, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="resnet_recipe.data.records")
    pack_to(split, tmp_path)
    text = caplog.text
    assert "images/s" in text and "MB/s" in text and "ETA" in text
    assert f"packed {len(PACKED)} of {len(FILES) + 1} images" in text
    assert "(3 re-encoded), rejected 4" in text
    assert "re-encoded c1/png.JPEG: PNG image, not a JPEG" in text
    assert "rejected c0/truncated.JPEG: truncated JPEG" in text


def repeated_list(path, lines, image="c0/plain.JPEG"):
    """A list of `lines` entries that all name the same image (a list may repeat a file)."""
    path.write_text("".join(f"{index}\t0\t{image}\n" for index in range(lines)))
    return path


def test_a_worker_writes_each_chunk_before_it_reads_the_next(split, tmp_path):
    """What a worker holds is one chunk: when it reports a chunk, that chunk's records are
    already written and the list's next lines not yet packed."""
    root, _, _ = split
    lst = repeated_list(tmp_path / "long.lst", 10 * records.CHUNK_IMAGES)
    out = records.PartFiles(*(str(tmp_path / name) for name in ("p.rec", "p.idx", "p.tsv")))
    job = records.PackJob(str(lst), str(root), False)
    reported = []

    class Stop(Exception):
        pass

    def report(images, bytes_read, unusual):
        reported.append((images, os.path.getsize(out.rec)))
        if len(reported) == 3:
            raise Stop

    with pytest.raises(Stop):
        records.pack_slice(job, records.list_slices(lst, 1)[0], out, report)
    chunk_bytes = reported[0][1]
    assert chunk_bytes > 0
    assert reported == [(records.CHUNK_IMAGES, chunk_bytes * n) for n in (1, 2, 3)]


def test_a_failing_worker_names_the_line_and_leaves_nothing(split, tmp_path):
    """A malformed line in the second worker's slice stops the pack with its line number
    in the whole list."""
    root, _, _ = split
    lst = repeated_list(tmp_path / "bad.lst", 100)
    lines = lst.read_text().splitlines(keepends=True)
    lines[76] = "76\tc0/plain.JPEG\n"
    lst.write_text("".join(lines))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = [out_dir / name for name in ("x.rec", "x.idx", "x.rejected.tsv")]
    with pytest.raises(ValueError, match="bad.lst line 77: expected index<TAB>label<TAB>path"):
        pack_records(lst, root, *out, workers=2)
    assert os.listdir(out_dir) == []


KILLED_PACK = """
import sys
from resnet_recipe.data.records import pack_records
pack_records(*sys.argv[1:6], workers=2)
"""


def test_a_killed_pack_leaves_nothing_complete_and_the_next_run_cleans_up(split, tmp_path):
    """SIGKILL the packing process while its two workers write: no .rec, .idx or
    rejected.tsv appears, the workers die with it, and the next pack into the same folder
    removes the leftover temporaries and writes the same files as an undisturbed pack."""
    import psutil

    root, _, _ = split
    lst = repeated_list(tmp_path / "long.lst", 200_000, image="c2/wide.JPEG")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = [out_dir / name for name in ("x.rec", "x.idx", "x.rejected.tsv")]
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_PACK, str(lst), str(root), *map(str, out)]
    )
    deadline = time.monotonic() + 120
    while sum(path.stat().st_size for path in out_dir.glob(".x.rec.*.tmp")) < 2_000_000:
        assert process.poll() is None, "the pack ended before it was killed"
        assert time.monotonic() < deadline, "the pack wrote nothing in 2 minutes"
        time.sleep(0.01)
    workers = psutil.Process(process.pid).children()
    assert len(workers) == 2
    process.kill()
    process.wait()
    psutil.wait_procs(workers, timeout=30)
    assert not any(worker.is_running() and worker.status() != "zombie" for worker in workers)
    assert not any(path.exists() for path in out)
    leftovers = os.listdir(out_dir)
    # The three temporary outputs and the second worker's three part files.
    assert len(leftovers) == 6 and all(
        name.startswith(".x.") and name.endswith(".tmp") for name in leftovers
    )

    small = repeated_list(tmp_path / "small.lst", 50, image="c2/wide.JPEG")
    pack_records(small, root, *out, workers=2)
    assert sorted(os.listdir(out_dir)) == sorted(path.name for path in out)
    (tmp_path / "clean").mkdir()
    clean = [tmp_path / "clean" / path.name for path in out]
    pack_records(small, root, *clean, workers=1)
    for path, expected in zip(out, clean, strict=True):
        assert path.read_bytes() == expected.read_bytes()


def test_a_malformed_list_line_is_named(split, tmp_path):
    root, _, _ = split
    lst = tmp_path / "bad.lst"
    lst.write_text("0\t0\tc0/plain.JPEG\n1\tc0/progressive.JPEG\n")
    out = [tmp_path / name for name in ("x.rec", "x.idx", "x.rejected.tsv")]
    with pytest.raises(ValueError, match="bad.lst line 2: expected index<TAB>label<TAB>path"):
        pack_records(lst, root, *out)


def test_nothing_packable_is_an_error(tmp_path):
    (tmp_path / "c0").mkdir()
    (tmp_path / "c0" / "empty.JPEG").write_bytes(b"")
    lst = tmp_path / "one.lst"
    lst.write_text("0\t0\tc0/empty.JPEG\n")
    out = [tmp_path / name for name in ("x.rec", "x.idx", "x.rejected.tsv")]
    with pytest.raises(ValueError, match="no image of .* could be packed"):
        pack_records(lst, tmp_path, *out, max_rejected_fraction=1.0)
    assert not any(path.exists() for path in out)
    assert check_image(b"").verdict == REJECTED


def test_command_line_lists_and_packs_a_tree(tmp_path):
    from resnet_recipe.cli import main

    for number, synset in enumerate(["n01", "n01", "n02"]):
        path = tmp_path / "train" / synset / f"{number}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tiny_image_bytes("jpeg", seed=number))
    lst, classes = str(tmp_path / "train.lst"), str(tmp_path / "classes.tsv")
    train = str(tmp_path / "train")
    assert main(["make-list", train, lst, "--classes", classes, "--write-classes"]) == 0
    assert main(["pack", lst, train, str(tmp_path / "train.rec"), "--workers", "2"]) == 0
    assert (tmp_path / "classes.tsv").read_text() == "0\tn01\n1\tn02\n"
    assert len((tmp_path / "train.idx").read_text().splitlines()) == 3
    assert (tmp_path / "train.rejected.tsv").read_text() == "path\treason\n"


def test_the_first_slice_is_the_smaller_one(tmp_path):
    lst = repeated_list(tmp_path / "long.lst", 1000)
    assert [part.lines for part in records.list_slices(lst, 2)] == [473, 527]
    assert [part.lines for part in records.list_slices(lst, 3)] == [310, 345, 345]
    assert [part.lines for part in records.list_slices(lst, 1)] == [1000]
