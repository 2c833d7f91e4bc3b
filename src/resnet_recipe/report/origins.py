"""Where the report's results came from: the Provenance section (one row per result file:
code commit, uncommitted changes, MXNet and DALI versions, MXNet build features, host and
GPUs) and the marks on table rows made by other code or another machine than most.

The code of a result is its git commit with its uncommitted-changes flag; its machine is
its host. The most common of each among all result files is the report's own; a row of the
accuracy, training or inference table whose results have another gets its origin column
filled ("other code", "other machine"), and report.md marks it.
"""

from collections import Counter

import pandas as pd

from resnet_recipe.report.experiment import device_label
from resnet_recipe.report.inputs import BENCH_COLUMNS
from resnet_recipe.results import PROVENANCE

ORIGIN_COLUMN = "origin"
# How report.md marks a row whose origin is not the report's own (a footnote sign).
ORIGIN_MARK = "†"
ORIGIN_NOTE = (
    f"{ORIGIN_MARK}: made by other code (git commit or uncommitted changes) or on another "
    "machine (host) than most results of this report; see the Provenance section."
)


def _text(value):
    return str(value)


def _yes_no(value):
    return "yes" if value else "no"


def _short_commit(value):
    return str(value)[:10]


def _marked(value):
    return f"{ORIGIN_MARK} {value}"


# Columns of the Provenance table: (column, Markdown header, formatter); the CSV holds the
# values unformatted (the whole commit).
PROVENANCE_COLUMNS = [
    ("result", "result", _text),
    ("git_commit", "commit", _short_commit),
    ("uncommitted_changes", "uncommitted changes", _yes_no),
    ("mxnet", "MXNet", _text),
    ("dali", "DALI", _text),
    ("mxnet_features", "MXNet build", _text),
    ("host", "host", _text),
    ("gpu_model", "GPU", _text),
    ("gpu_count", "GPU count", _text),
    ("gpu_driver", "driver", _text),
    (ORIGIN_COLUMN, "origin", _marked),
]
# The key of a benchmark row in its table: the point's settings and its setup.
BENCH_KEYS = {
    kind: [*columns[:3], "network", "image_size"] for kind, columns in BENCH_COLUMNS.items()
}


def provenance_row(label, result):
    """One row of the Provenance table for the result `result` named `label`; fields a
    result lacks (one written before results carried provenance) are empty."""
    made = result.get(PROVENANCE) or {}
    code, versions = made.get("code") or {}, made.get("versions") or {}
    machine = made.get("machine") or {}
    features = made.get("mxnet_features")
    enabled = None if features is None else ", ".join(k for k, on in features.items() if on)
    models = sorted(set(machine.get("gpus") or []))
    return {
        "result": label,
        "git_commit": code.get("git_commit"),
        "uncommitted_changes": code.get("git_uncommitted_changes"),
        "mxnet": versions.get("mxnet"),
        "dali": versions.get("nvidia-dali"),
        "mxnet_features": enabled if enabled != "" else "none",
        "host": machine.get("hostname"),
        "gpu_model": ", ".join(models) or None,
        "gpu_count": machine.get("gpu_count"),
        "gpu_driver": machine.get("gpu_driver"),
    }


def _bench_label(kind, row):
    device = device_label(row["gpus"])
    if kind == "train":
        return f"training benchmark {row['dtype']}, {device}, batch {row['batch_per_device']}"
    return f"inference benchmark {row['dtype']}, {device}, batch {row['batch_size']}"


def provenance_table(runs, scores, bench_train, bench_infer):
    """One row per result file (training reports, scores, benchmark points), with its
    origin marked when its code or machine is not the most common one."""
    rows = [provenance_row(f"training run {r['report']['run']}", r["report"]) for r in runs]
    rows += [provenance_row(f"score {score['run']}", score) for score in scores]
    for kind, bench in (("train", bench_train), ("infer", bench_infer)):
        for _, point in bench.iterrows():
            rows.append(provenance_row(_bench_label(kind, point), point["result"]))
    table = pd.DataFrame(rows, columns=[name for name, _, _ in PROVENANCE_COLUMNS[:-1]])
    table[ORIGIN_COLUMN] = _origins(table)
    return table.astype({"gpu_count": "Int64"})


def _identity(table):
    code = list(zip(table["git_commit"], table["uncommitted_changes"], strict=True))
    return code, list(table["host"])


def _origins(table):
    """'other code', 'other machine', both or '' per row, against the most common code
    (commit and uncommitted flag) and host among the rows."""
    if table.empty:
        return []
    code, hosts = _identity(table)
    usual_code = Counter(code).most_common(1)[0][0]
    usual_host = Counter(hosts).most_common(1)[0][0]
    return [
        ", ".join(
            word
            for word, other in (("other code", c != usual_code), ("other machine", h != usual_host))
            if other
        )
        for c, h in zip(code, hosts, strict=True)
    ]


def mark_origins(tables, provenance, runs, scores, bench_train, bench_infer):
    """The accuracy, training and inference tables with an origin column: the origins
    (from the Provenance table's rows, in the order provenance_table made them) of the
    result files behind each row; empty when they are the report's own."""
    origins = list(provenance[ORIGIN_COLUMN])
    start = len(runs) + len(scores)
    by_run = {}
    for result, origin in zip([r["report"] for r in runs] + scores, origins[:start], strict=True):
        by_run.setdefault(result["run"], set()).update(filter(None, origin.split(", ")))
    marked = dict(tables)
    accuracy = tables["accuracy"].copy()
    accuracy[ORIGIN_COLUMN] = [", ".join(sorted(by_run.get(run, ()))) for run in accuracy["run"]]
    marked["accuracy"] = accuracy
    for kind, name, bench in (
        ("train", "training", bench_train),
        ("infer", "inference", bench_infer),
    ):
        keys = bench[BENCH_KEYS[kind]].copy()
        keys[ORIGIN_COLUMN] = origins[start : start + len(bench)]
        start += len(bench)
        marked[name] = tables[name].merge(keys, on=BENCH_KEYS[kind], how="left")
    return marked


def origin_columns(table):
    """The Markdown column of a table's origins, when some row has one; else none."""
    if ORIGIN_COLUMN in table and table[ORIGIN_COLUMN].fillna("").ne("").any():
        return [PROVENANCE_COLUMNS[-1]]
    return []
