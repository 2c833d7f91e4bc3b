"""Where the report's results came from: the Provenance section (one row per result file:
code commit, uncommitted changes, MXNet and DALI versions, MXNet build features, host and
GPUs) and the marks on table rows made by other code or another machine than most.

The code of a result is its git commit with its uncommitted-changes flag; its machine is
its host. The most common of each among all result files is the report's own; a row of the
accuracy, training or inference table whose results have another gets its origin column
filled ("other code", "other machine"; "no provenance" for a result written without one),
and report.md marks it.
"""

from collections import Counter

import pandas as pd

from resnet_recipe.report.experiment import device_label
from resnet_recipe.report.inputs import MXNET_ENGINE, POINT_KEYS
from resnet_recipe.workflow_support.results import PROVENANCE

ORIGIN_COLUMN = "origin"
# How report.md marks a row whose origin is not the report's own (a footnote sign).
ORIGIN_MARK = "†"
ORIGIN_NOTE = (
    f"{ORIGIN_MARK}: made by other code (git commit or uncommitted changes) or on another "
    "machine (host) than most results of this report, or written without provenance; see "
    "the Provenance section."
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
# The key of a benchmark row in its table: the point's settings (for inference, with its
# engine) and its setup.
BENCH_KEYS = {kind: [*keys, "network", "image_size"] for kind, keys in POINT_KEYS.items()}


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
    engine = "" if row["engine"] == MXNET_ENGINE else f"{row['engine']} "
    return f"{engine}inference benchmark {row['dtype']}, {device}, batch {row['batch_size']}"


def labelled_results(runs, scores, bench_train, bench_infer, parities=()):
    """(label, result) of every result file the report read: training reports, scores,
    training and inference benchmark points, ONNX parity results."""
    labelled = [(f"training run {run['report']['run']}", run["report"]) for run in runs]
    labelled += [(f"score {score['run']}", score) for score in scores]
    for kind, bench in (("train", bench_train), ("infer", bench_infer)):
        labelled += [(_bench_label(kind, point), point["result"]) for _, point in bench.iterrows()]
    labelled += [(f"ONNX parity {parity['run']}", parity) for parity in parities]
    return labelled


def _code_and_host(result):
    row = provenance_row("", result)
    return (row["git_commit"], row["uncommitted_changes"]), row["host"]


def usual_origin(all_results):
    """The most common code (commit, uncommitted flag) and the most common host among
    results: the report's own origin."""
    identities = [_code_and_host(result) for result in all_results]
    code = Counter(code for code, _ in identities).most_common(1)
    host = Counter(host for _, host in identities).most_common(1)
    return (code[0][0] if code else None), (host[0][0] if host else None)


def origin(results, usual):
    """What the results behind one table row have that differs from the usual origin:
    'no provenance', 'other code', 'other machine', both of the last, or ''."""
    if any(PROVENANCE not in result for result in results):
        return "no provenance"
    identities = [_code_and_host(result) for result in results]
    words = [("other code", any(code != usual[0] for code, _ in identities))]
    words.append(("other machine", any(host != usual[1] for _, host in identities)))
    return ", ".join(word for word, differs in words if differs)


def provenance_table(runs, scores, bench_train, bench_infer, parities=()):
    """One row per result file (training reports, scores, benchmark points, ONNX parity
    results), with its origin when its code or machine is not the most common one."""
    labelled = labelled_results(runs, scores, bench_train, bench_infer, parities)
    usual = usual_origin([result for _, result in labelled])
    rows = [
        {**provenance_row(label, result), ORIGIN_COLUMN: origin([result], usual)}
        for label, result in labelled
    ]
    columns = [name for name, _, _ in PROVENANCE_COLUMNS]
    return pd.DataFrame(rows, columns=columns).astype({"gpu_count": "Int64"})


def mark_origins(tables, runs, scores, bench_train, bench_infer, parities=()):
    """The accuracy, training, inference and (when given) ONNX tables with an origin
    column: what the result files behind each row (a run's report and score, and its
    parity result; a benchmark point) have that differs from the report's usual origin;
    empty when nothing does."""
    labelled = labelled_results(runs, scores, bench_train, bench_infer, parities)
    usual = usual_origin([result for _, result in labelled])
    by_run = {}
    for result in [run["report"] for run in runs] + scores:
        by_run.setdefault(result["run"], []).append(result)
    marked = dict(tables)
    accuracy = tables["accuracy"].copy()
    accuracy[ORIGIN_COLUMN] = [origin(by_run.get(run, []), usual) for run in accuracy["run"]]
    marked["accuracy"] = accuracy
    if "onnx" in tables:
        parity_of = {parity["run"]: parity for parity in parities}
        onnx = tables["onnx"].copy()
        onnx[ORIGIN_COLUMN] = [
            origin([*by_run.get(run, []), parity_of[run]], usual) for run in onnx["run"]
        ]
        marked["onnx"] = onnx
    for kind, name, bench in (
        ("train", "training", bench_train),
        ("infer", "inference", bench_infer),
    ):
        keys = bench[BENCH_KEYS[kind]].copy()
        keys[ORIGIN_COLUMN] = [origin([result], usual) for result in bench["result"]]
        marked[name] = tables[name].merge(keys, on=BENCH_KEYS[kind], how="left")
    return marked


def origin_columns(table):
    """The Markdown column of a table's origins, when some row has one; else none."""
    if ORIGIN_COLUMN in table and table[ORIGIN_COLUMN].fillna("").ne("").any():
        return [PROVENANCE_COLUMNS[-1]]
    return []
