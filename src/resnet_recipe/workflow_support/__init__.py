"""What every stage shares: its settings, the files it hands on, where they came from.

settings.py     one frozen dataclass per config section, built once where a stage starts
results.py      the result files between stages: their fields, reading and writing
provenance.py   code, versions, MXNet build and machine of every result
code_digest.py  which package modules a stage runs, and one digest of their text
devices.py      GPU discovery and locks, MXNet contexts, machine facts
progress.py     logging set-up for stages, and progress lines with rate and ETA
"""
