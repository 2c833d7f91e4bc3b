"""What every stage shares: its settings, the files it hands on, where they came from.

declaration.py     how a setting is declared once (type, default, bounds, description,
                   origin, what it affects), the Section base, rerun triggers from "affects"
settings.py        one frozen dataclass per config section of training (run, network, input),
                   and run_settings(), the one merge of training.defaults with a run
run_matrix.py      the runs a config asks for: training.runs, sweep points, one per seed
stage_settings.py  the other sections' dataclasses (data, score, benchmark, onnx, ...)
config_schema.py   the config schema and config/README.md's key tables, generated
results.py         the result files between stages: their fields, reading and writing
provenance.py      code, versions, MXNet build and machine of every result
code_digest.py     which package modules a stage runs, and one digest of their text
devices.py         GPU discovery and locks, MXNet contexts, machine facts
machine_load.py    what else used the CPUs while a benchmark point ran, and when that
                   marks the point disturbed
preflight.py       a config checked against the machine (GPUs, build, disk) before any job
progress.py        logging set-up for stages, and progress lines with rate and ETA
"""
