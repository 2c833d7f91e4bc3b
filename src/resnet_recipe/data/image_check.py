"""Which image files can be packed as they are, which need re-encoding, which are broken.

A record is packed as it is only when it is a complete 8-bit, 3-component baseline or
progressive JPEG: the kind every decoder on the training path (DALI on the GPU and the CPU,
OpenCV inside mx.io.ImageRecordIter) takes. Everything else that Pillow can decode (PNG or
other formats under a .JPEG name, CMYK or grayscale JPEGs, lossless or arithmetic-coded
JPEGs) is re-encoded to an RGB JPEG; the rest is rejected with a reason.

Truncated JPEGs are the case that matters most: OpenCV and DALI's CPU decoder only warn
("Premature end of JPEG data") and return an image that is partly or wholly grey or black,
so a truncated file would silently become wrong training data. The as-is check therefore
walks the whole JPEG stream, every marker segment and every scan's entropy-coded data, up to
the EOI marker. That proves the file is complete and its tables are consistent without
spending a full decode per image (libjpeg-turbo's Huffman decoding alone costs more than
reading and writing the file); corrupt bits inside the entropy-coded data, which decoders
survive with a warning, are not looked for.
"""

import functools
import io
import re
import struct
import warnings
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError

AS_IS = "as-is"
REENCODED = "re-encoded"
REJECTED = "rejected"

# Quality of re-encoded images; 4:4:4 keeps the colours of drawings and screenshots.
REENCODE_QUALITY = 95

# Frame headers (SOFn) by marker code; only the first three are taken as they are.
FRAME_KINDS = {
    0xC0: "baseline",
    0xC1: "extended sequential",
    0xC2: "progressive",
    0xC3: "lossless",
    0xC5: "differential sequential",
    0xC6: "differential progressive",
    0xC7: "differential lossless",
    0xC9: "arithmetic-coded sequential",
    0xCA: "arithmetic-coded progressive",
    0xCB: "arithmetic-coded lossless",
    0xCD: "differential arithmetic-coded sequential",
    0xCE: "differential arithmetic-coded progressive",
    0xCF: "differential arithmetic-coded lossless",
}
PROGRESSIVE = 0xC2
PLAIN_FRAMES = {0xC0, 0xC1, PROGRESSIVE}
EOI, SOS, DHT, DQT, DRI = 0xD9, 0xDA, 0xC4, 0xDB, 0xDD
# Markers that stand alone, without a length: TEM and the restart markers.
STANDALONE = {0x01, *range(0xD0, 0xD8)}
# Segments libjpeg skips over: APPn, COM, DNL and DAC (arithmetic conditioning tables).
SKIPPED = {*range(0xE0, 0xF0), 0xFE, 0xDC, 0xCC}
# Entropy-coded data ends at the first 0xFF that is not a stuffed 0xFF00 or a restart marker.
END_OF_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7]")
COMPONENT_KINDS = {1: "grayscale", 2: "2-component", 4: "CMYK or YCCK"}
# libjpeg-turbo's limits: 4 quantization and Huffman tables of each kind, sampling factors
# 1 to 4, at most 10 blocks in the MCU of an interleaved scan.
TABLE_IDS = 4
MAX_SAMPLING = 4
MAX_BLOCKS_IN_MCU = 10


class CheckedImage(NamedTuple):
    verdict: str  # AS_IS, REENCODED or REJECTED
    data: bytes | None  # the bytes to pack: the original or the re-encoded JPEG
    reason: str  # why it was re-encoded or rejected; empty when packed as it is


class Frame(NamedTuple):
    progressive: bool
    # ((component id, horizontal sampling, vertical sampling, quantization table), ...)
    components: tuple


class JpegProblem(Exception):
    """What keeps a byte string from being packed as it is (a reason, not a failure)."""


def check_image(data, full_decode=False):
    """Classify one file's bytes and return what to pack (see the module docstring).

    full_decode also decodes every JPEG that passes the stream check with Pillow, at 1/8
    scale (all entropy-coded data is still decoded), at several times the cost.
    """
    if not data:
        return CheckedImage(REJECTED, None, "empty file (0 bytes)")
    try:
        check_plain_jpeg(data)
    except JpegProblem as problem:
        return reencode(data, str(problem))
    if full_decode:
        try:
            image = Image.open(io.BytesIO(data))
            image.draft("RGB", (1, 1))
            image.load()
        except Exception as error:  # Pillow raises many kinds (OSError, SyntaxError, ...)
            return CheckedImage(REJECTED, None, f"corrupt JPEG; Pillow cannot decode it: {error}")
    return CheckedImage(AS_IS, data, "")


def check_plain_jpeg(data):
    """Raise JpegProblem unless data is a complete 8-bit, 3-component baseline or
    progressive JPEG that libjpeg-turbo decodes without an error.

    Walks every marker segment and skips every scan's entropy-coded data up to EOI, and
    checks what libjpeg-turbo checks before it decodes (frame and scan parameters, table
    definitions, Huffman codes), so a file that passes decodes to a complete image.
    """
    if not data.startswith(b"\xff\xd8"):
        raise JpegProblem("not a JPEG")
    size = len(data)
    position = 2
    frame = None
    quantization, dc, ac = frozenset(), frozenset(), frozenset()  # ids of defined tables
    scans = 0
    while True:
        code, position = read_marker(data, position)
        if code == EOI:
            break
        if code in STANDALONE:
            continue
        length, start, position = segment_bounds(data, position, code)
        if code in SKIPPED:  # APPn segments (EXIF) can be large: not copied for nothing
            continue
        segment = data[start:position]
        if code in FRAME_KINDS:
            if frame is not None:
                raise JpegProblem("JPEG with more than one frame")
            frame = read_frame(code, segment)
        elif code == DQT:
            quantization |= read_quantization_tables(segment)
        elif code == DHT:
            new_dc, new_ac = read_huffman_tables(segment)
            dc, ac = dc | new_dc, ac | new_ac
        elif code == SOS:
            check_scan(segment, frame, quantization, dc, ac)
            scans += 1
            end_of_scan = END_OF_SCAN.search(data, position)
            if end_of_scan is None:
                raise JpegProblem(
                    f"truncated JPEG: scan data runs to the end ({size} bytes) without EOI"
                )
            position = end_of_scan.start()
        elif code == DRI:
            if length != 4:
                raise JpegProblem("corrupt JPEG: bad restart interval segment")
        else:
            raise JpegProblem(f"corrupt JPEG: unexpected marker 0xFF{code:02X}")
    if scans == 0:
        raise JpegProblem("JPEG without image data (no scan)")


def read_marker(data, position):
    """(marker code, position after it) of the marker expected at `position`."""
    size = len(data)
    if position >= size:
        raise JpegProblem(f"truncated JPEG: ends at byte {size} without an EOI marker")
    if data[position] != 0xFF:
        raise JpegProblem(f"corrupt JPEG: no marker at byte {position}")
    while position < size and data[position] == 0xFF:  # 0xFF fill bytes may pad markers
        position += 1
    if position >= size:
        raise JpegProblem(f"truncated JPEG: ends at byte {size} inside a marker")
    return data[position], position + 1


def segment_bounds(data, position, code):
    """(length field, start of the payload, end) of the segment of marker `code` whose
    length field is at `position`."""
    size = len(data)
    if position + 2 > size:
        raise JpegProblem(f"truncated JPEG: ends at byte {size} inside a marker")
    length = int.from_bytes(data[position : position + 2], "big")
    if length < 2 or position + length > size:
        raise JpegProblem(
            f"truncated JPEG: segment 0xFF{code:02X} at byte {position - 2} "
            f"runs past the end ({size} bytes)"
        )
    return length, position + 2, position + length


# Most files of a dataset share their tables and many their frame and scan headers, so
# each distinct segment is checked once.
@functools.lru_cache(maxsize=4096)
def read_frame(code, segment):
    """The Frame of a SOFn segment, if it is one that is packed as it is."""
    if code not in PLAIN_FRAMES:
        raise JpegProblem(f"{FRAME_KINDS[code]} JPEG")
    if len(segment) < 6:
        raise JpegProblem("corrupt JPEG: short frame header")
    precision, height, width, count = struct.unpack_from(">BHHB", segment)
    if precision != 8:
        raise JpegProblem(f"{precision}-bit JPEG")
    if count != 3:
        raise JpegProblem(f"{COMPONENT_KINDS.get(count, f'{count}-component')} JPEG")
    if len(segment) != 6 + 3 * count:
        raise JpegProblem("corrupt JPEG: bad frame header length")
    if height == 0 or width == 0:
        raise JpegProblem(f"JPEG frame header with size {width}x{height}")
    components = []
    for i in range(count):
        component_id, sampling, table_id = segment[6 + 3 * i : 9 + 3 * i]
        horizontal, vertical = divmod(sampling, 16)
        if not (1 <= horizontal <= MAX_SAMPLING and 1 <= vertical <= MAX_SAMPLING):
            raise JpegProblem(f"corrupt JPEG: sampling factors {horizontal}x{vertical}")
        if table_id >= TABLE_IDS:
            raise JpegProblem(f"corrupt JPEG: quantization table id {table_id}")
        components.append((component_id, horizontal, vertical, table_id))
    if len({component[0] for component in components}) != count:
        raise JpegProblem("corrupt JPEG: repeated component ids in the frame header")
    most_horizontal = max(h for _, h, _, _ in components)
    most_vertical = max(v for _, _, v, _ in components)
    if any(most_horizontal % h or most_vertical % v for _, h, v, _ in components):
        raise JpegProblem("JPEG with fractional chroma subsampling")
    return Frame(code == PROGRESSIVE, tuple(components))


@functools.lru_cache(maxsize=4096)
def read_quantization_tables(segment):
    """Ids of the tables a DQT segment defines."""
    ids = set()
    position = 0
    while position < len(segment):
        precision, table_id = divmod(segment[position], 16)
        if precision > 1 or table_id >= TABLE_IDS:
            raise JpegProblem("corrupt JPEG: bad quantization table")
        ids.add(table_id)
        position += 1 + 64 * (precision + 1)
    if position != len(segment):
        raise JpegProblem("corrupt JPEG: bad quantization table segment length")
    return frozenset(ids)


@functools.lru_cache(maxsize=4096)
def read_huffman_tables(segment):
    """(DC table ids, AC table ids) a DHT segment defines."""
    found = {0: set(), 1: set()}
    position = 0
    while position < len(segment):
        table_class, table_id = divmod(segment[position], 16)
        if table_class > 1 or table_id >= TABLE_IDS:
            raise JpegProblem("corrupt JPEG: bad Huffman table id")
        code_counts = segment[position + 1 : position + 17]
        symbols = segment[position + 17 : position + 17 + sum(code_counts)]
        if len(code_counts) != 16 or len(symbols) != sum(code_counts) or len(symbols) > 256:
            raise JpegProblem("corrupt JPEG: bad Huffman table segment length")
        check_huffman_code(code_counts)
        if table_class == 0 and max(symbols, default=0) > 15:
            raise JpegProblem("corrupt JPEG: DC Huffman symbol above 15")
        found[table_class].add(table_id)
        position += 17 + len(symbols)
    return frozenset(found[0]), frozenset(found[1])


def check_huffman_code(code_counts):
    """The counts of codes of length 1 to 16 must build a prefix code that leaves the
    all-ones code of every length unused (libjpeg's rule)."""
    next_code = 0
    for length, count in enumerate(code_counts, 1):
        next_code = 2 * next_code + count
        if next_code >= 1 << length:
            raise JpegProblem("corrupt JPEG: impossible Huffman code lengths")


@functools.lru_cache(maxsize=4096)
def check_scan(segment, frame, quantization, dc, ac):
    """The scan's parameters are valid, its components are in the frame, and every table it
    needs is defined (ids of the quantization, DC and AC tables defined so far)."""
    if frame is None:
        raise JpegProblem("corrupt JPEG: scan before the frame header")
    count = segment[0] if segment else 0
    if not 1 <= count <= 4 or len(segment) != 4 + 2 * count:
        raise JpegProblem("corrupt JPEG: bad scan header")
    spectral_start, spectral_end, approximation = segment[1 + 2 * count : 4 + 2 * count]
    high, low = divmod(approximation, 16)
    if frame.progressive:
        # A progressive scan codes either the DC coefficients or one band of AC coefficients
        # of one component; DC refinement scans use no Huffman table at all.
        if spectral_start == 0:
            valid = spectral_end == 0
        else:
            valid = spectral_start <= spectral_end <= 63 and count == 1
        valid = valid and (high == 0 or low == high - 1) and low <= 13
        needs_dc, needs_ac = spectral_start == 0 and high == 0, spectral_start > 0
    else:
        valid = (spectral_start, spectral_end, approximation) == (0, 63, 0)
        needs_dc = needs_ac = True
    if not valid:
        raise JpegProblem("corrupt JPEG: bad scan parameters")
    components = {component[0]: component[1:] for component in frame.components}
    blocks_in_mcu = 0
    scanned = set()
    for i in range(count):
        component = segment[1 + 2 * i]
        dc_table, ac_table = divmod(segment[2 + 2 * i], 16)
        if component not in components or component in scanned:
            raise JpegProblem(f"corrupt JPEG: scan of component {component}")
        scanned.add(component)
        horizontal, vertical, quantization_table = components[component]
        blocks_in_mcu += horizontal * vertical
        if quantization_table not in quantization:
            raise JpegProblem(f"corrupt JPEG: quantization table {quantization_table} not defined")
        if needs_dc and dc_table not in dc:
            raise JpegProblem(f"corrupt JPEG: DC table {dc_table} used but not defined")
        if needs_ac and ac_table not in ac:
            raise JpegProblem(f"corrupt JPEG: AC table {ac_table} used but not defined")
    if count > 1 and blocks_in_mcu > MAX_BLOCKS_IN_MCU:
        raise JpegProblem(f"corrupt JPEG: {blocks_in_mcu} blocks per MCU")


def reencode(data, problem):
    """Decode with Pillow and re-encode as RGB JPEG, or reject with a reason."""
    with warnings.catch_warnings():
        # Palette images with transparency warn on conversion; the RGB result is wanted.
        warnings.simplefilter("ignore")
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            if problem != "not a JPEG":  # a JPEG cut or broken in its first segments
                return CheckedImage(REJECTED, None, f"{problem}; Pillow cannot read it either")
            return CheckedImage(REJECTED, None, f"not an image (starts with {data[:24]!r})")
        except Exception as error:  # Pillow raises many kinds (OSError, SyntaxError, ...)
            return CheckedImage(REJECTED, None, f"{problem}; Pillow cannot read it: {error}")
        if problem == "not a JPEG":
            problem = f"{image.format} image, not a JPEG"
        try:
            image.load()
            rgb = image.convert("RGB")
        except Exception as error:
            return CheckedImage(REJECTED, None, f"{problem}; Pillow cannot decode it: {error}")
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=REENCODE_QUALITY, subsampling=0)
    return CheckedImage(REENCODED, out.getvalue(), problem)
