"""Raw image trees -> MXNet im2rec list files (.lst) and the shared label mapping.

A split folder holds one folder per class (images may sit in nested folders below it), or,
for val, a flat folder plus a label CSV. Labels are the positions of the train class folder
names in sorted order, written once to classes.tsv (`label\\tsynset[\\tname]`) and used for
both splits. A list has one `index\\tlabel\\trelative/path` line per file; every regular,
non-hidden file is listed (packing rejects what is not an image, with a reason).
"""

import contextlib
import csv
import hashlib
import json
import logging
import os
import random
import time

from resnet_recipe.files.atomic_files import atomic_open, write_json
from resnet_recipe.files.user_errors import UserError

log = logging.getLogger(__name__)

NAMES_IN_ERRORS = 10


class ListingError(UserError):
    """A raw tree or label file that cannot be turned into a list."""


def class_folders(split_dir):
    """Sorted names of the (non-hidden) class folders directly under a raw split folder."""
    return sorted(
        entry.name
        for entry in os.scandir(split_dir)
        if entry.is_dir() and not entry.name.startswith(".")
    )


def tree_fingerprint(root):
    """Hex digest of every listed file's relative path, size and mtime under root (hidden
    files and folders are not listed, so they do not count).

    One stat per file (about 3 us each with the tree in the page cache, so a few seconds
    for ImageNet's 1.3 M files), and it changes when any file is edited, added, removed
    or renamed.
    """
    digest = hashlib.sha256()
    _digest_files(root, "", digest)
    return digest.hexdigest()


def _digest_files(folder, relative, digest):
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        if entry.name.startswith("."):
            continue
        name = relative + entry.name
        if entry.is_dir():
            _digest_files(entry.path, name + "/", digest)
        else:
            stat = entry.stat()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())


def folder_signature(root):
    """Hex digest of the relative path and mtime of root and of every non-hidden folder
    below it: one stat per folder (22 ms for 1,000 class folders of 1.28 M files, measured
    on a busy 2-core machine, against 25 s for tree_fingerprint there).

    A folder's mtime changes when a name in it is added, removed or renamed (an image
    replaced by a rename too), not when a file in it is rewritten in place. A folder whose
    link count is 2 has no folders in it (ext4, XFS, tmpfs and NFS count them; btrfs
    reports 1, and such folders are listed), so the files of a class folder are not read.
    """
    digest = hashlib.sha256()
    _digest_folders(root, "", digest)
    return digest.hexdigest()


def _digest_folders(folder, relative, digest):
    stat = os.stat(folder)
    digest.update(f"{relative}\0{stat.st_mtime_ns}\n".encode())
    if stat.st_nlink == 2:  # itself and its name in the parent: no folder in it
        return
    with os.scandir(folder) as entries:
        names = sorted(entry.name for entry in entries if entry.is_dir())
    for name in names:
        if not name.startswith("."):
            _digest_folders(os.path.join(folder, name), f"{relative}{name}/", digest)


def cached_tree_fingerprint(root, cache_path, rescan=False):
    """tree_fingerprint(root), computed again only when folder_signature(root) differs from
    the one stored with it in cache_path (or when rescan): a file rewritten in place, and
    nothing else changed, is seen after a rescan. Returns the fingerprint."""
    signature = folder_signature(root)  # before the scan: a change during it is seen later
    identity = {"root": os.path.abspath(root), "folders": signature}
    with contextlib.suppress(FileNotFoundError, ValueError):
        with open(cache_path, encoding="utf-8") as handle:
            cached = json.load(handle)
        if not rescan and {key: cached.get(key) for key in identity} == identity:
            return cached["fingerprint"]
    started = time.monotonic()
    fingerprint = tree_fingerprint(root)
    write_json(cache_path, {**identity, "fingerprint": fingerprint})
    log.info("scanned %s in %.1f s: fingerprint %s", root, time.monotonic() - started, fingerprint)
    return fingerprint


def rescan_raw_trees(split_dirs, cache_paths):
    """Fingerprint every file of each raw split folder again (cached_tree_fingerprint with
    rescan): what finds images rewritten in place."""
    for split_dir, cache_path in zip(split_dirs, cache_paths, strict=True):
        cached_tree_fingerprint(split_dir, cache_path, rescan=True)


def named(items):
    """'a, b, c' or 'a, b, ... and 7 more' for error messages."""
    items = list(items)
    shown = ", ".join(str(item) for item in items[:NAMES_IN_ERRORS])
    more = len(items) - NAMES_IN_ERRORS
    return f"{shown} and {more} more" if more > 0 else shown


def list_files(folder):
    """Sorted paths relative to folder ('/'-separated) of every non-hidden file below it,
    in nested folders too. Broken symbolic links are listed (packing reports them);
    pipes, sockets and devices are not files to read."""
    found = []
    for current, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            path = os.path.join(current, name)
            if name.startswith(".") or not (os.path.isfile(path) or not os.path.exists(path)):
                continue
            found.append(os.path.relpath(path, folder).replace(os.sep, "/"))
    unlistable = [path for path in found if "\t" in path or "\n" in path]
    if unlistable:
        raise ListingError(
            f"file names with a tab or newline cannot go into a list: {named(unlistable)}"
        )
    return sorted(found)


def read_class_names(path):
    """{synset: human name} from lines `synset name...` (LOC_synset_mapping.txt,
    synset_words.txt) or `synset<TAB>name`."""
    names = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            fields = line.strip().split(None, 1)
            if len(fields) == 2:
                names[fields[0]] = " ".join(fields[1].split())
    return names


def write_classes(train_dir, classes_tsv, names_path=None):
    """Write classes.tsv from the sorted class folder names of the train split; names_path
    optionally adds a human name per synset (see read_class_names). Returns the count."""
    folders = class_folders(train_dir)
    if not folders:
        raise ListingError(f"{train_dir} has no class folders")
    unlistable = [name for name in folders if "\t" in name or "\n" in name]
    if unlistable:
        raise ListingError(f"class folder names with a tab or newline: {named(unlistable)}")
    names = read_class_names(names_path) if names_path else {}
    with atomic_open(classes_tsv) as out:
        for label, synset in enumerate(folders):
            fields = [str(label), synset] + ([names[synset]] if synset in names else [])
            out.write("\t".join(fields) + "\n")
    log.info("%d classes from %s written to %s", len(folders), train_dir, classes_tsv)
    return len(folders)


def read_classes(classes_tsv):
    """{synset: label} of a classes.tsv."""
    labels = {}
    with open(classes_tsv, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or fields[0] != str(len(labels)):
                raise ListingError(
                    f"{classes_tsv} line {number}: expected label {len(labels)}<TAB>synset, "
                    f"got {line.rstrip()!r}"
                )
            labels[fields[1]] = len(labels)
    if not labels:
        raise ListingError(f"{classes_tsv} has no classes")
    return labels


def make_list(split_dir, classes_tsv, lst_path, shuffle_seed=None, val_labels=None):
    """Write the im2rec list of a split folder; returns the number of files listed.

    Paths are relative to split_dir and sorted, then shuffled with shuffle_seed when it is
    given (train). val_labels names a label CSV for a flat folder (see read_val_labels).
    """
    labels = read_classes(classes_tsv)
    if val_labels:
        labelled = labelled_flat_files(split_dir, val_labels, labels)
    else:
        labelled = labelled_class_files(split_dir, labels)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(labelled)
    with atomic_open(lst_path) as out:
        out.writelines(
            f"{index}\t{label}\t{path}\n" for index, (path, label) in enumerate(labelled)
        )
    order = "sorted" if shuffle_seed is None else f"shuffled with seed {shuffle_seed}"
    log.info("%d files of %s listed in %s (%s)", len(labelled), split_dir, lst_path, order)
    return len(labelled)


def labelled_class_files(split_dir, labels):
    """Sorted [(relative path, label)] of a split folder with one folder per class."""
    folders = class_folders(split_dir)
    if not folders:
        raise ListingError(f"{split_dir} has no class folders (a flat folder needs a label CSV)")
    unknown = [name for name in folders if name not in labels]
    if unknown:
        raise ListingError(
            f"class folders of {split_dir} that the train split does not have "
            f"(not in classes.tsv): {named(unknown)}"
        )
    outside = [
        entry.name
        for entry in os.scandir(split_dir)
        if not entry.is_dir() and not entry.name.startswith(".")
    ]
    if outside:
        raise ListingError(
            f"files in {split_dir} outside any class folder: {named(sorted(outside))}; "
            "move them into their class folder or remove them"
        )
    labelled = []
    empty = []
    for name in folders:
        files = list_files(os.path.join(split_dir, name))
        if not files:
            empty.append(name)
        labelled += [(f"{name}/{path}", labels[name]) for path in files]
    if empty:
        raise ListingError(f"class folders of {split_dir} with no files: {named(empty)}")
    return labelled


def read_val_labels(csv_path):
    """({image key: synset}, keys_are_stems) of a label CSV, told apart by the header:
    Kaggle's LOC_val_solution.csv (`ImageId,PredictionString`, ImageId without extension,
    the synset the first token of PredictionString) or a plain `filename,synset` CSV
    (filename relative to the val folder)."""
    labels = {}
    with open(csv_path, encoding="utf-8-sig", newline="") as handle:
        rows = csv.reader(handle)
        header = [field.strip().lower() for field in next(rows, [])]
        if header[:2] == ["imageid", "predictionstring"]:
            keys_are_stems = True
        elif header[:2] == ["filename", "synset"]:
            keys_are_stems = False
        else:
            raise ListingError(
                f"{csv_path}: header {','.join(header)!r} is neither ImageId,PredictionString "
                "(Kaggle LOC_val_solution.csv) nor filename,synset"
            )
        for number, row in enumerate(rows, 2):
            if not any(field.strip() for field in row):
                continue
            key = row[0].strip()
            synset = row[1].split()[0] if len(row) > 1 and row[1].split() else ""
            if not key or not synset:
                raise ListingError(f"{csv_path} line {number}: no image or no synset in {row}")
            if labels.get(key, synset) != synset:
                raise ListingError(
                    f"{csv_path} line {number}: {key} labelled {synset}, "
                    f"and {labels[key]} on an earlier line"
                )
            labels[key] = synset
    return labels, keys_are_stems


def labelled_flat_files(split_dir, csv_path, labels):
    """Sorted [(relative path, label)] of a flat folder whose labels are in a CSV."""
    image_synsets, keys_are_stems = read_val_labels(csv_path)
    files = list_files(split_dir)
    if not files:
        raise ListingError(f"{split_dir} has no files")
    unknown = sorted(set(image_synsets.values()) - set(labels))
    if unknown:
        raise ListingError(
            f"synsets in {csv_path} that the train split does not have "
            f"(not in classes.tsv): {named(unknown)}"
        )
    files_by_key = {}
    for path in files:
        key = os.path.splitext(path)[0] if keys_are_stems else path
        if key in files_by_key:
            raise ListingError(
                f"{files_by_key[key]} and {path} in {split_dir} both match {key} in {csv_path}"
            )
        files_by_key[key] = path
    unlabelled = [path for key, path in files_by_key.items() if key not in image_synsets]
    if unlabelled:
        raise ListingError(
            f"{len(unlabelled)} images in {split_dir} have no label in {csv_path}: "
            f"{named(sorted(unlabelled))}"
        )
    missing = sorted(key for key in image_synsets if key not in files_by_key)
    if missing:
        raise ListingError(
            f"{len(missing)} images labelled in {csv_path} are missing from {split_dir}: "
            f"{named(missing)}"
        )
    return [(path, labels[image_synsets[key]]) for key, path in files_by_key.items()]
