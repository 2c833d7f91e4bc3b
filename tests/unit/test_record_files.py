"""Record files without packing: a record split at aligned magic words as dmlc writes it,
parts appended while their worker still writes, one default for the rejected fraction."""

import os
import struct

from helpers import REPO
from helpers.images import MAGIC, jpeg_holding_the_magic_word

from resnet_recipe.data import records
from resnet_recipe.data.records import pack_records
from resnet_recipe.files import recordio


def test_a_record_is_split_at_aligned_magic_words():
    """As dmlc's RecordIOWriter does: parts flagged first, middle, ..., last, the magic word
    left out of the payload at each aligned cut (offsets 32, 44 and 48 of the payload)."""
    header = bytes(24)
    image = jpeg_holding_the_magic_word()
    pieces, size = recordio.record_parts(header, image)
    starts = [piece for piece in pieces if len(piece) == 8 and piece.startswith(MAGIC)]
    parts = [divmod(struct.unpack("<I", start[4:])[0], 1 << 29) for start in starts]
    assert parts == [(1, 32), (2, 8), (2, 0), (3, len(header + image) - 52)]
    payload = len(header + image)
    assert size == len(b"".join(pieces)) == 8 * 4 + payload - 3 * 4 + (-payload % 4)


def test_one_default_for_the_rejected_fraction():
    """The package, the command line and the config schema allow the same fraction."""
    import inspect

    import yaml

    from resnet_recipe.cli import build_parser

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    in_schema = schema["properties"]["data"]["properties"]["max_rejected_fraction"]["default"]
    in_function = inspect.signature(pack_records).parameters["max_rejected_fraction"].default
    args = build_parser().parse_args(["pack", "x.lst", "root", "x.rec"])
    assert in_schema == in_function == records.MAX_REJECTED_FRACTION == 0.001
    assert args.max_rejected_fraction in (None, records.MAX_REJECTED_FRACTION)


def test_a_part_is_appended_while_its_worker_still_writes(tmp_path):
    """Once part 0 is complete, part 1's records are copied as they grow; the index lines
    of part 1 get part 0's size added; the part files are removed at the end."""
    from resnet_recipe.files.part_files import PartFiles, RecordJoiner

    outputs = PartFiles(*(str(tmp_path / name) for name in ("x.rec", "x.idx", "x.tsv")))
    for path, text in zip(outputs, ["AAAA", "0\t0\n", "path\treason\nbad\tno\n"], strict=True):
        open(path, "w").write(text)
    with RecordJoiner(outputs, 2) as joiner:
        part = joiner.files[1]
        open(part.rec, "w").write("BB")
        joiner.advance({})  # part 0 still being written: nothing moves
        assert open(outputs.rec).read() == "AAAA"
        joiner.advance({0: 4})
        assert open(outputs.rec).read() == "AAAABB"
        open(part.rec, "a").write("CC")
        open(part.idx, "w").write("1\t0\n2\t2\n")
        open(part.rejected, "w").write("worse\tyes\n")
        joiner.finish([4, 4])
    assert open(outputs.rec).read() == "AAAABBCC"
    assert open(outputs.idx).read() == "0\t0\n1\t4\n2\t6\n"
    assert open(outputs.rejected).read() == "path\treason\nbad\tno\nworse\tyes\n"
    assert sorted(os.listdir(tmp_path)) == ["x.idx", "x.rec", "x.tsv"]
