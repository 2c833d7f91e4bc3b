"""The accuracy table as an experiment table: one column per setting in which the runs
differ (only those), so each row says what it changed.

Settings are read from each run's report.json (training settings by name, network.* and
pipeline.* with their section), as `resnet-recipe compare` reads them. Settings the table
shows in columns of its own (GPUs, dtype, epochs, image size, the network) are left out.
"""

from resnet_recipe.report.flat_settings import differing, run_settings

# Settings that are columns of the accuracy table already.
SHOWN_ELSEWHERE = ("gpus", "dtype", "epochs", "pipeline.image_size")
SHOWN_ELSEWHERE += ("network.depth", "network.version")
# The accuracy table's column after which the setting columns go.
AFTER_COLUMN = "epochs"


def differing_settings(runs):
    """The names of the settings (sorted) whose value is not the same in every run."""
    flat = [run_settings(run["report"]) for run in runs]
    return [name for name in differing(flat) if name not in SHOWN_ELSEWHERE]


def _cell(value):
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return value


def add_setting_columns(table, runs):
    """The accuracy table with one column per differing setting after its epochs column,
    each run's value in its row (empty for a run with a score but no training report);
    and the names of those columns."""
    names = differing_settings(runs)
    by_run = {run["report"]["run"]: run_settings(run["report"]) for run in runs}
    table = table.copy()
    position = table.columns.get_loc(AFTER_COLUMN) + 1
    for offset, name in enumerate(names):
        values = [_cell(by_run.get(run, {}).get(name)) for run in table["run"]]
        table.insert(position + offset, name, values)
    return table, names


def with_setting_columns(columns, names):
    """Markdown columns (column, header, formatter) with one per setting in `names` after
    the epochs column; the header is the setting's name."""
    position = [name for name, _, _ in columns].index(AFTER_COLUMN) + 1
    added = [(name, name, str) for name in names]
    return [*columns[:position], *added, *columns[position:]]
