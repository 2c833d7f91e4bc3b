"""Two runs, or two results folders, side by side: their metrics, the settings in which
they differ and where they came from (the provenance sections of their result files).

    compare(a, b)         the comparison of two train/<run> folders or two results folders
    format_text(result)   the comparison as plain-text tables

This module imports neither MXNet, DALI nor pandas: `resnet-recipe compare` starts at once.
"""

import glob
import json
import os

from resnet_recipe.files.user_errors import UserError
from resnet_recipe.report.flat_settings import differing, flatten, run_settings
from resnet_recipe.report.replicas import (
    difference_test,
    replica_key,
    spread,
    spread_text,
    time_to_target,
)
from resnet_recipe.workflow_support import results
from resnet_recipe.workflow_support.settings import Report

# Metrics of a run: (name, where it is read: "report" or "score", field, scale).
RUN_METRICS = (
    ("top-1 (%)", "score", "top1", 100.0),
    ("top-5 (%)", "score", "top5", 100.0),
    ("loss", "score", "loss", 1.0),
    ("validation top-1 at the last epoch (%)", "report", "val_top1", 100.0),
    ("training images/s", "report", "images_per_s", 1.0),
    ("training time (h)", "report", "train_seconds", 1 / 3600.0),
    ("scoring images/s", "score", "images_per_s", 1.0),
)
# The metrics whose spread over a family's seeds compare shows.
SPREAD_METRICS = ("top-1 (%)", "top-5 (%)", "training time (h)")
# report.target_top1 as declared (MLPerf's ResNet-50 target), when none is given.
DEFAULT_TARGET_TOP1 = Report().target_top1
# Benchmark point folders of a results folder and what their points are read as.
BENCH_FOLDERS = {"bench_train": results.BENCH_TRAIN, "bench_infer": results.BENCH_INFER}


def provenance_fields(result):
    """The provenance section of a result, flat ({code.git_commit: ...}), without the
    settings digest (settings are compared as settings); {} when it has none."""
    section = dict(result.get(results.PROVENANCE) or {})
    section.pop("settings_digest", None)
    return flatten(section, "")


def _value_text(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return " ".join(map(str, value)) or "(none)"
    return str(value)


def _pairs(a, b, names):
    return [[name, _value_text(a.get(name)), _value_text(b.get(name))] for name in names]


def _read_run(folder):
    """(report, score or None) of a train/<run> folder; the score is the results folder's
    score/<run>.json beside train/ when it exists."""
    report = results.read(os.path.join(folder, "report.json"), results.RUN_REPORT)
    results_root = os.path.dirname(os.path.dirname(os.path.abspath(folder)))
    score_path = os.path.join(results_root, "score", f"{report['run']}.json")
    score = results.read(score_path, results.SCORE) if os.path.exists(score_path) else None
    return report, score


def _run_metrics(report, score):
    metrics = {}
    for name, source, field, scale in RUN_METRICS:
        result = report if source == "report" else score
        if result is not None and isinstance(result.get(field), int | float):
            metrics[name] = result[field] * scale
    return metrics


def _provenance_rows(pairs):
    """[field, A, B] for every provenance field that differs between the results of the
    (a, b) pairs; a field that takes several values on one side lists them all."""
    sides = ({}, {})
    for pair in pairs:
        for side, result in zip(sides, pair, strict=True):
            for name, value in provenance_fields(result).items():
                side.setdefault(name, set()).add(_value_text(value))
    rows = []
    for name in sorted(set(sides[0]) | set(sides[1])):
        texts = [", ".join(sorted(side.get(name, {"-"}))) for side in sides]
        if texts[0] != texts[1]:
            rows.append([name, *texts])
    return rows


def _family(folder):
    """[(report, score or None, metrics.jsonl lines)] of the replicas of the run in
    `folder`: the train/<run> folders beside it whose settings are the same but for the
    seed (replicas.replica_key), itself included."""
    parent = os.path.dirname(os.path.abspath(folder))
    key = replica_key(_read_run(folder)[0])
    members = []
    for name in sorted(os.listdir(parent)):
        sibling = os.path.join(parent, name)
        if not os.path.isfile(os.path.join(sibling, "report.json")):
            continue
        report, score = _read_run(sibling)
        if replica_key(report) == key:
            metrics = results.read_metrics(os.path.join(sibling, "metrics.jsonl"))
            members.append((report, score, metrics))
    return members


def _replica_rows(a, b, target_top1):
    """([field, A, B] rows of each side's family of replicas: its runs, the spread of
    top-1, top-5 and training time, the time to target_top1; and the verdict on whether
    the two families' top-1 differ by more than their seed spread explains."""
    sides = [_family(folder) for folder in (a, b)]
    rows = [["runs", *(" ".join(r["run"] for r, _, _ in side) for side in sides)]]
    values = {}
    for name, source, field, scale in RUN_METRICS:
        if name not in SPREAD_METRICS:
            continue
        per_side = []
        for side in sides:
            found = [(r if source == "report" else s) for r, s, _ in side]
            per_side.append([x[field] * scale for x in found if x is not None])
        values[name] = per_side
        digits = 4 if "time" in name else 2
        rows.append([f"{name} over seeds", *(spread_text(spread(v), digits) for v in per_side)])
    targets = [time_to_target([m for _, _, m in side], target_top1) for side in sides]
    rows.append(
        [f"epoch to {target_top1:g}% validation top-1", *(_value_text(e) for e, _ in targets)]
    )
    rows.append(["hours to it", *(_value_text(h) for _, h in targets)])
    verdict = difference_test(*values["top-1 (%)"])
    return rows, f"top-1 of A against B: {verdict['sentence']}"


def compare_runs(a, b, target_top1=DEFAULT_TARGET_TOP1):
    """The comparison of two train/<run> folders: one section each for the metrics, the
    settings that differ, each side's family of replicas (runs beside it that differ
    only in seed) with its time to target_top1, and the provenance that differs; and the
    verdict on whether the families' top-1 differ beyond their seed spread."""
    (report_a, score_a), (report_b, score_b) = _read_run(a), _read_run(b)
    metrics_a, metrics_b = _run_metrics(report_a, score_a), _run_metrics(report_b, score_b)
    names = [name for name, *_ in RUN_METRICS if name in metrics_a or name in metrics_b]
    settings_a, settings_b = run_settings(report_a), run_settings(report_b)
    pairs = [(report_a, report_b)] + ([(score_a, score_b)] if score_a and score_b else [])
    replica_rows, verdict = _replica_rows(a, b, target_top1)
    return {
        "a": a,
        "b": b,
        "sections": {
            "metrics": _pairs(metrics_a, metrics_b, names),
            "settings that differ": _pairs(
                settings_a, settings_b, differing([settings_a, settings_b])
            ),
            "provenance that differs": _provenance_rows(pairs),
            "families of replicas (runs that differ only in seed)": replica_rows,
        },
        "verdict": verdict,
    }


def _result_files(folder):
    """{relative path: contract} of the result files in a results folder: train/<run>
    reports, score/<run>.json and the benchmark points."""
    found = {}
    train = os.path.join(folder, "train")
    for run in sorted(os.listdir(train)) if os.path.isdir(train) else []:
        if os.path.isfile(os.path.join(train, run, "report.json")):
            found[os.path.join("train", run, "report.json")] = results.RUN_REPORT
    for sub, contract in (("score", results.SCORE), *BENCH_FOLDERS.items()):
        for root, _, files in sorted(os.walk(os.path.join(folder, sub))):
            for name in sorted(files):
                if name.endswith(".json"):
                    path = os.path.relpath(os.path.join(root, name), folder)
                    found[path] = contract
    return found


def _bench_metrics(point):
    metrics = {"images/s": point["images_per_s"]}
    if point["kind"] == "infer":
        metrics["latency mean (ms)"] = point["latency_ms"]["mean"]
    return metrics


def compare_folders(a, b):
    """The comparison of two results folders: each run and benchmark point present in
    both (metrics, settings that differ), the provenance that differs over all of them, and
    what only one folder has."""
    files_a, files_b = _result_files(a), _result_files(b)
    common = [path for path in files_a if path in files_b]
    metrics, settings, pairs = [], [], []
    for path in common:
        pair = [results.read(os.path.join(folder, path), files_a[path]) for folder in (a, b)]
        pairs.append(pair)
        if path.startswith("train" + os.sep):
            run = path.split(os.sep)[1]
            runs = [_read_run(os.path.join(folder, "train", run)) for folder in (a, b)]
            values = [_run_metrics(*pair) for pair in runs]
            names = [name for name, *_ in RUN_METRICS if name in values[0] or name in values[1]]
            metrics += [[f"{run}: {row[0]}", *row[1:]] for row in _pairs(*values, names)]
            flat = [run_settings(report) for report, _ in runs]
            settings += [[f"{run}: {row[0]}", *row[1:]] for row in _pairs(*flat, differing(flat))]
        elif not path.startswith("score" + os.sep):
            values = [_bench_metrics(point) for point in pair]
            metrics += [[f"{path}: {row[0]}", *row[1:]] for row in _pairs(*values, values[0])]
    only = [[path, "yes", "-"] for path in files_a if path not in files_b]
    only += [[path, "-", "yes"] for path in files_b if path not in files_a]
    return {
        "a": a,
        "b": b,
        "sections": {
            "metrics": metrics,
            "settings that differ": settings,
            "provenance that differs": _provenance_rows(pairs),
            "only in one": only,
        },
    }


def compare(a, b, target_top1=DEFAULT_TARGET_TOP1):
    """compare_runs when both are run folders (they hold report.json; a family's name,
    train/NAME for runs train/NAME.seedN, stands for its first replica), compare_folders
    when both are results folders; anything else is an error naming the path."""
    a, b = _first_replica(a), _first_replica(b)
    for path in (a, b):
        if not os.path.isdir(path):
            raise UserError(f"{path}: not a folder (expected a train/<run> or results folder)")
    is_run = [os.path.isfile(os.path.join(path, "report.json")) for path in (a, b)]
    if is_run[0] != is_run[1]:
        run, other = (a, b) if is_run[0] else (b, a)
        raise UserError(
            f"{run} is a training run folder but {other} is not: compare like with like"
        )
    return compare_runs(a, b, target_top1) if is_run[0] else compare_folders(a, b)


def _first_replica(path):
    """`path`, or for train/NAME that is no folder, the first train/NAME.seedN that is."""
    if os.path.isdir(path):
        return path
    replicas = sorted(glob.glob(glob.escape(path.rstrip(os.sep)) + ".seed*"))
    return next((replica for replica in replicas if os.path.isdir(replica)), path)


def format_text(comparison):
    """The comparison as plain text: one table per section (field, A, B); an empty
    section says so."""
    lines = [f"A: {comparison['a']}", f"B: {comparison['b']}"]
    for title, rows in comparison["sections"].items():
        lines += ["", f"{title}:"]
        if not rows:
            lines.append("  (none)")
            continue
        table = [["", "A", "B"], *rows]
        widths = [max(len(row[i]) for row in table) for i in range(3)]
        for row in table:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
            lines.append("  " + "  ".join(cells).rstrip())
    if comparison.get("verdict"):
        lines += ["", comparison["verdict"]]
    return "\n".join(lines) + "\n"


def format_json(comparison):
    """The comparison as JSON: each section a list of {field, a, b}."""
    sections = {
        title: [dict(zip(("field", "a", "b"), row, strict=True)) for row in rows]
        for title, rows in comparison["sections"].items()
    }
    return json.dumps({**comparison, "sections": sections}, indent=2) + "\n"
