"""Raw trees -> classes.tsv and im2rec lists: label mapping, nesting, flat val with CSVs."""

import os

import pytest

from resnet_recipe.data.listing import ListingError, make_list, write_classes


def make_tree(root, files):
    """Create a small file at each relative path under root; return root."""
    for path in files:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x")
    return root


def read_lst(path):
    return [line.split("\t") for line in path.read_text().splitlines()]


@pytest.fixture
def train(tmp_path):
    return make_tree(
        tmp_path / "train",
        [
            "n02/b.JPEG",
            "n02/a.JPEG",
            "n01/x.JPEG",
            "n01/deeper/still/y.JPEG",  # nested: still class n01
            "n03/c.jpeg",
            "n03/notes.txt",  # listed: packing rejects it with a reason
            "n03/.DS_Store",  # hidden: not listed
            "n03/.cache/z.JPEG",
        ],
    )


@pytest.fixture
def classes(tmp_path, train):
    path = tmp_path / "classes.tsv"
    write_classes(train, path)
    return path


def test_classes_are_the_sorted_train_folders(tmp_path, train):
    (train / ".hidden-folder").mkdir()
    assert write_classes(train, tmp_path / "classes.tsv") == 3
    assert (tmp_path / "classes.tsv").read_text() == "0\tn01\n1\tn02\n2\tn03\n"


def test_class_names_file_adds_human_names(tmp_path, train):
    names = tmp_path / "LOC_synset_mapping.txt"
    names.write_text("n01 tench, Tinca tinca\nn03 goldfish\n")
    write_classes(train, tmp_path / "classes.tsv", names)
    assert (tmp_path / "classes.tsv").read_text() == (
        "0\tn01\ttench, Tinca tinca\n1\tn02\n2\tn03\tgoldfish\n"
    )


def test_val_list_is_sorted_with_labels_and_nested_paths(tmp_path, train, classes):
    assert make_list(train, classes, tmp_path / "val.lst") == 6
    assert read_lst(tmp_path / "val.lst") == [
        ["0", "0", "n01/deeper/still/y.JPEG"],
        ["1", "0", "n01/x.JPEG"],
        ["2", "1", "n02/a.JPEG"],
        ["3", "1", "n02/b.JPEG"],
        ["4", "2", "n03/c.jpeg"],
        ["5", "2", "n03/notes.txt"],
    ]


def test_train_list_is_shuffled_by_the_seed(tmp_path, train, classes):
    def order(seed):
        make_list(train, classes, tmp_path / f"{seed}.lst", shuffle_seed=seed)
        rows = read_lst(tmp_path / f"{seed}.lst")
        assert [row[0] for row in rows] == [str(i) for i in range(len(rows))]
        return [tuple(row[1:]) for row in rows]

    make_list(train, classes, tmp_path / "sorted.lst")
    unshuffled = [tuple(row[1:]) for row in read_lst(tmp_path / "sorted.lst")]
    assert order(3) == order(3)
    assert sorted(order(3)) == sorted(order(4)) == sorted(unshuffled)
    assert len({tuple(order(seed)) for seed in range(5)} | {tuple(unshuffled)}) > 2


def test_val_class_unknown_to_train_is_named(tmp_path, classes):
    val = make_tree(tmp_path / "val", ["n01/a.JPEG", "n99/b.JPEG"])
    with pytest.raises(ListingError, match="not in classes.tsv.*n99"):
        make_list(val, classes, tmp_path / "val.lst")
    assert not (tmp_path / "val.lst").exists()


def test_val_may_have_fewer_classes_than_train(tmp_path, classes):
    val = make_tree(tmp_path / "val", ["n02/a.JPEG"])
    make_list(val, classes, tmp_path / "val.lst")
    assert read_lst(tmp_path / "val.lst") == [["0", "1", "n02/a.JPEG"]]


@pytest.mark.parametrize(
    "files, folders, message",
    [
        ([], [], "has no class folders"),
        (["n01/a.JPEG"], ["n02"], "class folders .* with no files: n02"),
        (["n01/a.JPEG", "stray.JPEG"], [], "outside any class folder: stray.JPEG"),
        (["n01/a\tb.JPEG"], [], "tab or newline"),
    ],
    ids=["empty-split", "empty-class", "stray-file", "tab-in-name"],
)
def test_tree_errors_name_the_problem(tmp_path, classes, files, folders, message):
    split = make_tree(tmp_path / "split", files)
    split.mkdir(exist_ok=True)
    for folder in folders:
        (split / folder).mkdir()
    with pytest.raises(ListingError, match=message):
        make_list(split, classes, tmp_path / "out.lst")


KAGGLE_CSV = (
    "ImageId,PredictionString\n"
    "ILSVRC2012_val_00000002,n03 10 20 30 40 n03 1 2 3 4\n"
    "ILSVRC2012_val_00000001,n01 5 6 7 8\n"
)
PLAIN_CSV = "filename,synset\nILSVRC2012_val_00000001.JPEG,n01\nILSVRC2012_val_00000002.JPEG,n03\n"


@pytest.mark.parametrize("csv_text", [KAGGLE_CSV, PLAIN_CSV], ids=["kaggle", "plain"])
def test_flat_val_with_a_label_csv(tmp_path, classes, csv_text):
    val = make_tree(
        tmp_path / "val", ["ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000001.JPEG"]
    )
    labels = tmp_path / "labels.csv"
    labels.write_text(csv_text)
    make_list(val, classes, tmp_path / "val.lst", val_labels=labels)
    assert read_lst(tmp_path / "val.lst") == [
        ["0", "0", "ILSVRC2012_val_00000001.JPEG"],
        ["1", "2", "ILSVRC2012_val_00000002.JPEG"],
    ]


@pytest.mark.parametrize(
    "files, csv_text, message",
    [
        (
            ["v1.JPEG", "v2.JPEG"],
            "ImageId,PredictionString\nv1,n01 1 2 3 4\n",
            "no label .*v2.JPEG",
        ),
        (["v1.JPEG"], "ImageId,PredictionString\nv1,n01\nv2,n02\n", "missing .*: v2"),
        (["v1.JPEG"], "filename,synset\nv1.JPEG,n77\n", "not in classes.tsv.*n77"),
        (["v1.JPEG"], "name,class\nv1.JPEG,n01\n", "neither ImageId,PredictionString"),
        (["v1.JPEG", "v1.png"], "ImageId,PredictionString\nv1,n01\n", "both match v1"),
        (["v1.JPEG"], "filename,synset\nv1.JPEG,n01\nv1.JPEG,n02\n", "v1.JPEG labelled n02"),
        ([], "filename,synset\n", "has no files"),
    ],
    ids=["unlabelled", "missing", "unknown-synset", "bad-header", "ambiguous", "conflict", "empty"],
)
def test_label_csv_errors_name_the_files(tmp_path, classes, files, csv_text, message):
    val = make_tree(tmp_path / "val", files)
    val.mkdir(exist_ok=True)
    labels = tmp_path / "labels.csv"
    labels.write_text(csv_text)
    with pytest.raises(ListingError, match=message):
        make_list(val, classes, tmp_path / "val.lst", val_labels=labels)


def test_tree_fingerprint_sees_every_edit_and_nothing_else(tmp_path):
    from resnet_recipe.data.listing import class_folders, tree_fingerprint

    (tmp_path / "b" / "nested").mkdir(parents=True)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.JPEG").write_bytes(b"one")
    (tmp_path / "b" / "nested" / "2.JPEG").write_bytes(b"two")
    (tmp_path / ".hidden").mkdir()
    assert class_folders(tmp_path) == ["a", "b"]
    before = tree_fingerprint(tmp_path)
    assert tree_fingerprint(tmp_path) == before  # stable
    (tmp_path / ".hidden" / "x").write_bytes(b"not listed")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"not listed")
    assert tree_fingerprint(tmp_path) == before  # what is not listed does not count

    image = tmp_path / "b" / "nested" / "2.JPEG"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # edited in place
    states = [before, tree_fingerprint(tmp_path)]
    (tmp_path / "a" / "3.JPEG").write_bytes(b"new")  # added
    states.append(tree_fingerprint(tmp_path))
    (tmp_path / "a" / "3.JPEG").rename(tmp_path / "a" / "4.JPEG")  # renamed
    states.append(tree_fingerprint(tmp_path))
    assert len(set(states)) == len(states)
    (tmp_path / "a" / "4.JPEG").unlink()  # removed: back to the edited tree
    assert tree_fingerprint(tmp_path) == states[1]


def test_folder_signature_sees_names_change_not_contents(tmp_path):
    """An added, removed or renamed file (at any depth) changes its folder's mtime and so
    the signature; a file rewritten in place does not."""
    from resnet_recipe.data.listing import folder_signature

    nested = tmp_path / "a" / "deeper"
    nested.mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (nested / "1.JPEG").write_bytes(b"one")
    signatures = [folder_signature(tmp_path)]
    assert folder_signature(tmp_path) == signatures[0]

    def changed(edit):
        edit()
        signatures.append(folder_signature(tmp_path))
        return signatures[-1] != signatures[-2]

    def later(path):
        """Move a folder's mtime on, as a later edit would on a coarse clock."""
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    assert not changed(lambda: (nested / "1.JPEG").write_bytes(b"edited in place"))
    assert changed(lambda: ((nested / "2.JPEG").write_bytes(b"two"), later(nested)))
    assert changed(lambda: ((nested / "2.JPEG").rename(nested / "3.JPEG"), later(nested)))
    assert changed(lambda: ((nested / "3.JPEG").unlink(), later(nested)))
    assert changed(lambda: ((tmp_path / "b").rename(tmp_path / "c"), later(tmp_path)))
    (tmp_path / ".hidden").mkdir()
    signatures.append(folder_signature(tmp_path))
    hidden = tmp_path / ".hidden"
    assert not changed(lambda: ((hidden / "x").write_bytes(b"not listed"), later(hidden)))


def test_cached_fingerprint_scans_again_only_when_told_or_when_folders_change(tmp_path):
    from resnet_recipe.data.listing import cached_tree_fingerprint, tree_fingerprint

    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    image = tree / "a" / "1.JPEG"
    image.write_bytes(b"one")
    cache = tmp_path / "cache" / "train.json"
    first = cached_tree_fingerprint(tree, cache)
    assert first == tree_fingerprint(tree)
    stat = image.stat()
    image.write_bytes(b"two")  # rewritten in place: the folders are unchanged
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cached_tree_fingerprint(tree, cache) == first
    rescanned = cached_tree_fingerprint(tree, cache, rescan=True)
    assert rescanned == tree_fingerprint(tree) != first
    assert cached_tree_fingerprint(tree, cache) == rescanned
    (tree / "a" / "2.JPEG").write_bytes(b"new")
    os.utime(tree / "a", ns=(0, 10**18))  # the folder's mtime moves
    assert cached_tree_fingerprint(tree, cache) == tree_fingerprint(tree) != rescanned
