"""The embedded demo tree: layout, split, variety, the odd files, determinism."""

import collections
import io
from pathlib import Path

import pytest
from PIL import Image

from resnet_recipe.data.demo_data import ODDITIES, SIDE_PIXELS, write_demo_tree
from resnet_recipe.data.image_check import AS_IS, REENCODED, check_image


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    counts = write_demo_tree(root)
    return root, counts


def tree_bytes(root):
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(Path(root).rglob("*"))
        if path.is_file()
    }


def test_imagenet_layout_with_a_stratified_split(demo):
    root, counts = demo
    assert counts == {"train": 1438, "val": 359}  # the 1,797 digits, 80/20
    for split in ("train", "val"):
        folders = sorted(path.name for path in (root / split).iterdir())
        assert folders == [f"digit{digit}" for digit in range(10)]
        files = list((root / split).glob("digit*/*.JPEG"))
        assert len(files) == counts[split]
    for digit in range(10):
        train = len(list((root / "train" / f"digit{digit}").iterdir()))
        val = len(list((root / "val" / f"digit{digit}").iterdir()))
        assert val == round(0.2 * (train + val))


def test_images_vary_in_size_aspect_and_colour(demo):
    root, _ = demo
    sizes, colours = set(), set()
    sample = sorted((root / "train").glob("*/*.JPEG"))[::7]
    assert len(sample) > 150
    for path in sample:
        image = Image.open(path)
        width, height = image.size
        assert SIDE_PIXELS[0] <= min(width, height) and max(width, height) <= SIDE_PIXELS[1]
        assert 0.7 <= width / height <= 1.45
        sizes.add(image.size)
        colours.add(image.convert("RGB").getpixel((0, 0)))
    assert len(sizes) > 50 and len(colours) > 150


def test_only_the_odd_files_need_reencoding(demo):
    root, _ = demo
    verdicts = collections.Counter()
    reencoded = {}
    for path in sorted(root.glob("*/*/*.JPEG")):
        checked = check_image(path.read_bytes())
        verdicts[checked.verdict] += 1
        if checked.verdict == REENCODED:
            split, folder = path.parts[-3:-1]
            reencoded[(split, int(folder[-1]))] = checked.reason
    assert verdicts == {AS_IS: 1797 - len(ODDITIES), REENCODED: len(ODDITIES)}
    reasons = {
        "png": "PNG image, not a JPEG",
        "cmyk": "CMYK or YCCK JPEG",
        "grayscale": "grayscale JPEG",
    }
    assert reencoded == {key: reasons[kind] for key, kind in ODDITIES.items()}


def test_same_seed_same_bytes_and_a_rerun_replaces_the_folders(demo, tmp_path):
    root, _ = demo
    stale = tmp_path / "train" / "digit0" / "stale.JPEG"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left from an earlier run")
    write_demo_tree(tmp_path)
    assert not stale.exists()
    assert tree_bytes(tmp_path) == tree_bytes(root)
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_every_file_is_a_decodable_image(demo):
    root, _ = demo
    paths = sorted(root.glob("val/*/*.JPEG"))
    assert len(paths) == round(0.2 * 1797)
    for path in paths:
        Image.open(io.BytesIO(path.read_bytes())).load()
