"""A full disk loses nothing: a pack and a result file that meet a full file system (a real
tmpfs of a few kB, mounted for the test) stop with one line naming the folder, leave no
output that looks complete, and the same command after space is freed makes them."""

import json
import subprocess
import sys

import pytest
from helpers.file_systems import mounted_tmpfs
from helpers.images import tiny_image_bytes

from resnet_recipe.files.atomic_files import write_json
from resnet_recipe.files.user_errors import UserError


def resize(folder, size):
    subprocess.run(["mount", "-o", f"remount,size={size}", folder], check=True)


def resnet_recipe(*args):
    return subprocess.run(
        [sys.executable, "-m", "resnet_recipe", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def raw_tree(root):
    for label in range(3):
        for number in range(20):
            path = root / f"c{label}" / f"{number}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tiny_image_bytes("jpeg", seed=100 * label + number))
    return root


def test_a_pack_on_a_full_disk_then_with_space(tmp_path):
    raw = raw_tree(tmp_path / "raw")
    with mounted_tmpfs(tmp_path / "small", "24k") as small:
        made = resnet_recipe(
            "make-list", raw, small / "train.lst", "--classes", small / "classes.tsv",
            "--write-classes",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        pack = ["pack", small / "train.lst", raw, small / "train.rec", "--workers", 2]
        full = resnet_recipe(*pack)
        assert full.returncode == 2 and "Traceback" not in full.stderr
        assert full.stderr.splitlines()[-1].startswith(
            f"resnet-recipe: error: {small}: No space left on device while "
        )
        assert sorted(path.name for path in small.iterdir()) == ["classes.tsv", "train.lst"]
        resize(small, "4m")
        again = resnet_recipe(*pack)
        assert again.returncode == 0, again.stderr
        assert len((small / "train.idx").read_text().splitlines()) == 60


def test_a_result_file_on_a_full_disk_is_not_left_half_written(tmp_path):
    with mounted_tmpfs(tmp_path / "small", "8k") as small:
        result = {"values": list(range(5000))}
        with pytest.raises(UserError) as full:
            write_json(small / "score.json", result)  # about 30 kB
        assert str(full.value).startswith(f"{small}: No space left on device while writing score")
        assert list(small.iterdir()) == []
        resize(small, "1m")
        write_json(small / "score.json", result)
        assert json.loads((small / "score.json").read_text()) == result
