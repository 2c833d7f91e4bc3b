"""Small image files and .rec/.idx record files of them."""

import io
import struct
from types import SimpleNamespace

import numpy as np
from PIL import Image


def tiny_image_bytes(kind="jpeg", size=(40, 30), seed=0):
    """File bytes of a small smooth RGB picture (gradients and a disc, colours from seed)
    stored as kind: jpeg, progressive, png, cmyk (JPEG) or grayscale (JPEG)."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(size)
    colours = rng.uniform(30, 225, size=(3, 3))
    pixels = colours[0] + (colours[1] - colours[0]) * x[..., None] + 20 * y[..., None]
    disc = (x - 0.4) ** 2 + (y - 0.3) ** 2 < 0.04
    pixels[disc] = colours[2]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    out = io.BytesIO()
    if kind in ("jpeg", "progressive"):
        image.save(out, format="JPEG", quality=90, progressive=kind == "progressive")
    elif kind == "png":
        image.save(out, format="PNG")
    elif kind == "cmyk":
        image.convert("CMYK").save(out, format="JPEG", quality=90)
    elif kind == "grayscale":
        image.convert("L").save(out, format="JPEG", quality=90)
    else:
        raise ValueError(f"unknown kind {kind}")
    return out.getvalue()


def write_tiny_rec(folder, name, labels, noise=0, side=None):
    """Write folder/name.rec and .idx: image i is a JPEG of 20 to 60 px a side (side x side
    if given) with label labels[i], filled with its label's colour (`.colours[label]`, RGB
    0-255) plus uniform noise of +-noise per pixel, which makes crops and flips visible.
    Returns a namespace with rec, idx, labels, colours."""
    # Imported here: mxnet takes seconds to import and most tests never need records.
    import mxnet as mx

    rng = np.random.default_rng(len(labels) + noise)
    colours = {
        label: (40 + 80 * (label % 3), 200 - 70 * (label % 3), 60 + 50 * (label % 4))
        for label in set(labels)
    }
    rec, idx = str(folder / f"{name}.rec"), str(folder / f"{name}.idx")
    writer = mx.recordio.MXIndexedRecordIO(idx, rec, "w")
    for index, label in enumerate(labels):
        height, width = (side, side) if side else rng.integers(20, 61, size=2)
        pixels = np.full((height, width, 3), colours[label], dtype=np.int64)
        pixels += rng.integers(-noise, noise + 1, size=pixels.shape)
        jpeg = io.BytesIO()
        image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
        image.save(jpeg, format="JPEG", quality=95)
        header = mx.recordio.IRHeader(0, float(label), index, 0)
        writer.write_idx(index, mx.recordio.pack(header, jpeg.getvalue()))
    writer.close()
    return SimpleNamespace(rec=rec, idx=idx, labels=list(labels), colours=colours)


MAGIC = struct.pack("<I", 0xCED7230A)


def jpeg_holding_the_magic_word():
    """A valid JPEG whose comment segment holds RecordIO's magic word at offsets 8, 20 and
    24 of the image (4-byte aligned in the record, after the 24-byte IRHeader) and at 13
    (not aligned): the writer must split its record at the aligned ones."""
    base = tiny_image_bytes("jpeg", seed=7)
    comment = b"\0\0" + MAGIC + b"\0" + MAGIC + b"\0\0\0" + MAGIC + MAGIC + b"end"
    segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    data = base[:2] + segment + base[2:]
    assert [data.find(MAGIC, start) for start in (0, 9, 14, 21)] == [8, 13, 20, 24]
    return data
