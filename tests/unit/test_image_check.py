"""The image check: what is packed as it is, what is re-encoded, what is rejected and why."""

import io
import random
import re

import numpy as np
import pytest
from helpers.images import tiny_image_bytes
from PIL import Image

from resnet_recipe.data.image_check import (
    AS_IS,
    REENCODED,
    REJECTED,
    JpegProblem,
    check_image,
    check_plain_jpeg,
)

JPEG = tiny_image_bytes("jpeg", size=(120, 90))
PROGRESSIVE = tiny_image_bytes("progressive", size=(120, 90), seed=1)


def pillow_rgb(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("data", [JPEG, PROGRESSIVE], ids=["baseline", "progressive"])
def test_plain_rgb_jpegs_are_packed_as_they_are(data):
    checked = check_image(data)
    assert checked == (AS_IS, data, "")
    assert check_image(data, full_decode=True) == (AS_IS, data, "")


def test_trailing_bytes_after_the_end_marker_are_harmless():
    assert check_image(JPEG + b"\0" * 7).verdict == AS_IS


@pytest.mark.parametrize(
    "data, reason",
    [
        (tiny_image_bytes("png"), "PNG image, not a JPEG"),
        (tiny_image_bytes("cmyk"), "CMYK or YCCK JPEG"),
        (tiny_image_bytes("grayscale"), "grayscale JPEG"),
    ],
    ids=["png", "cmyk", "grayscale"],
)
def test_other_images_are_reencoded_to_plain_jpeg_with_the_reason(data, reason):
    checked = check_image(data)
    assert (checked.verdict, checked.reason) == (REENCODED, reason)
    check_plain_jpeg(checked.data)  # a plain RGB JPEG now
    assert Image.open(io.BytesIO(checked.data)).mode == "RGB"
    # Same pixels within JPEG tolerance (quality 95, 4:4:4).
    difference = np.abs(pillow_rgb(checked.data) - pillow_rgb(data))
    assert difference.mean() < 2.0


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file (0 bytes)"),
        (JPEG[: len(JPEG) // 2], "truncated JPEG"),
        (JPEG[:-2], "truncated JPEG"),  # only the end marker missing
        (JPEG[:300], "truncated JPEG"),  # cut inside the headers
        (PROGRESSIVE[: len(PROGRESSIVE) * 2 // 3], "truncated JPEG"),
        # A lossless frame header over baseline data: no decoder takes it.
        (JPEG.replace(b"\xff\xc0", b"\xff\xc3", 1), "lossless JPEG; Pillow cannot decode it"),
        (b"this is a text file, named like a JPEG\n", "not an image"),
        (b"<html><body>404 Not Found</body></html>", "not an image"),
        (tiny_image_bytes("png")[:200], "PNG image, not a JPEG; Pillow cannot decode it"),
    ],
    ids=[
        "empty",
        "truncated",
        "no-eoi",
        "cut-in-headers",
        "truncated-progressive",
        "lossless",
        "text",
        "html",
        "truncated-png",
    ],
)
def test_broken_files_are_rejected_with_the_reason(data, reason):
    checked = check_image(data)
    assert checked.verdict == REJECTED
    assert checked.data is None
    assert checked.reason.startswith(reason)


DHT, SOS, EOI = 0xC4, 0xDA, 0xD9


def segment_ends(data):
    """(marker code, offset just after it) of every marker segment before EOI, and
    ("scan", offset just after the entropy-coded data) after each scan, walked apart from
    the module under test."""
    ends = []
    position = 2
    while True:
        assert data[position] == 0xFF, position
        code = data[position + 1]
        if code == EOI:
            return ends
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        ends.append((code, position))
        if code == SOS:
            position = re.compile(rb"\xff[^\x00\xd0-\xd7]").search(data, position).start()
            ends.append(("scan", position))


@pytest.mark.parametrize("data", [JPEG, PROGRESSIVE], ids=["baseline", "progressive"])
def test_a_jpeg_cut_at_any_segment_boundary_is_rejected_as_truncated(data):
    ends = segment_ends(data)
    assert len(ends) >= 6
    for code, end in ends:
        checked = check_image(data[:end])
        assert checked.verdict == REJECTED, (code, end)
        assert checked.reason.startswith("truncated JPEG"), (code, end, checked.reason)


def test_a_progressive_jpeg_cut_after_the_table_that_follows_its_first_scan_is_truncated():
    """The end of the data falls between two whole segments, after a complete scan and a
    complete Huffman table, with every later scan missing."""
    ends = segment_ends(PROGRESSIVE)
    first_scan = [kind for kind, _ in ends].index("scan")
    code, cut = ends[first_scan + 1]
    assert code == DHT and [kind for kind, _ in ends].count(SOS) > 2
    with pytest.raises(JpegProblem, match="^truncated JPEG: ends at byte"):
        check_plain_jpeg(PROGRESSIVE[:cut])
    assert check_image(PROGRESSIVE[:cut]).verdict == REJECTED


def mutants(rng, count):
    """Damaged copies of small JPEGs: cut, bytes changed, inserted, deleted, mostly in the
    headers (where a decoder's hard errors come from)."""
    bases = [
        tiny_image_bytes(kind, size=(64, 48), seed=seed)
        for seed, kind in enumerate(["jpeg", "progressive", "jpeg", "progressive"])
    ]
    for number in range(count):
        data = bases[number % len(bases)]
        headers_end = data.index(b"\xff\xda") + 20
        where = rng.randrange(headers_end if number % 3 else len(data))
        kind = number % 4
        if kind == 0:
            yield "cut", data[:where]
        elif kind == 1:
            yield "byte", data[:where] + bytes([rng.randrange(256)]) + data[where + 1 :]
        elif kind == 2:
            yield (
                "bit",
                data[:where] + bytes([data[where] ^ 1 << rng.randrange(8)]) + data[where + 1 :],
            )
        else:
            yield "insert", data[:where] + bytes([rng.randrange(256)]) + data[where:]


def test_damaged_jpegs_packed_as_they_are_decode_everywhere():
    """Every damaged JPEG the stream check lets through decodes without an error in Pillow
    (full size), OpenCV (inside MXNet) and DALI's CPU decoder; no cut file gets through."""
    import mxnet as mx
    from nvidia.dali import fn, pipeline_def, types

    passed = []
    for kind, data in mutants(random.Random(5), 400):
        if check_image(data).verdict != AS_IS:
            continue
        assert kind != "cut" or data.endswith(b"\xff\xd9")
        Image.open(io.BytesIO(data)).load()
        mx.image.imdecode(data).asnumpy()
        passed.append(np.frombuffer(data, dtype=np.uint8))
    assert 100 < len(passed) < 400  # the damage was real and the check not too strict

    @pipeline_def(batch_size=len(passed), num_threads=1, device_id=None)
    def decode():
        encoded = fn.external_source(source=lambda: passed, batch=True)
        return fn.decoders.image(encoded, device="cpu", output_type=types.RGB)

    pipeline = decode()
    pipeline.build()
    (images,) = pipeline.run()
    assert len(images) == len(passed)
