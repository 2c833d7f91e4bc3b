"""The aggregated report: accuracy, training-throughput and inference tables (CSV and
Markdown) and graphs (PNG) from the result files of training, scoring and benchmarks,
beside the published reference numbers of the original recipe on a DGX-1.

Every section builds from whatever subset of results it is given and says in words what is
missing, so a matrix with one run, only benchmarks or no FP32 still gives a full report.

    build.py       build_report, the entry point: read, tables, graphs, report.md
    compare.py     two result folders side by side (resnet-recipe compare); reads no graphs
    flat_settings.py  a run's settings as one flat mapping, and which differ between runs
    replicas.py    families of runs that differ only in seed, their spread, Welch's t-test,
                   time to a target accuracy (no pandas: compare uses it)
    families.py    the families table, their comparisons and report.json
    cost_plot.py   the graph of top-1 against training cost with its Pareto front
    inputs.py      every file the report reads (results through their contracts, reference CSVs)
    experiment.py  the reference's experiment, and which measured points are that experiment
    differences.py what differs between the measured build and setup and the reference's
    tables.py      the tables and their columns
    setting_columns.py  the accuracy table's columns of the settings in which runs differ
    origins.py     the Provenance table, and the rows made by other code or machines
    notes.py       sentences on what each table lacks
    markdown.py    report.md
    plots.py       the graphs
"""
