"""Shared test code: paths, factories and tiny settings. Test files import from here
(never from each other); conftest.py holds only fixtures.

- workflow_runs: a private copy of the workflow, configs, Snakemake runs and dry-run plans
- images: small image files and .rec/.idx record files
- tiny: the tiny network, pipeline and run settings the training-path tests share, and
  a trained tiny run
- result_files: result files written to the workflow's file contracts, for the report
- file_systems: real small file systems (tmpfs) for the full-disk tests
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
