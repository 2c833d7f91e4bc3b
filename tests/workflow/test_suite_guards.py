"""The suite's own guards, run as `make test` runs it (pytest-xdist over pyproject.toml's
settings): a test process that crashes or hangs fails the run quickly, naming the test."""

import subprocess
import sys
import textwrap
import time

from helpers import REPO

# Bounds this test's own pytest runs: a guard that failed would otherwise hang this one.
RUN_LIMIT_S = 180
CRASHING_FILES = {
    "test_aborts.py": """
        import os

        def test_aborts():
            os.abort()
        """,
    "test_waits.py": """
        import time

        def test_waits_a_little():
            time.sleep(2)

        def test_waits_more():
            time.sleep(2)
        """,
    "test_fine.py": """
        def test_fine():
            pass
        """,
}


def run_suite(folder, files, *options):
    """pytest in two xdist processes, with the project's settings, on `files` in folder."""
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(REPO / "pyproject.toml"),
            "--rootdir",
            str(folder),
            "-p",
            "no:cacheprovider",
            "--numprocesses",
            "2",
            *options,
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_S,
        cwd=folder,
    )
    return done, time.monotonic() - started


def test_a_crashed_test_process_fails_the_run_and_names_the_test(tmp_path):
    done, _ = run_suite(tmp_path, CRASHING_FILES)
    assert done.returncode != 0
    assert "crashed while running 'test_aborts.py::test_aborts'" in done.stdout
    assert "FAILED test_aborts.py::test_aborts" in done.stdout


def test_a_hung_test_is_ended_at_the_time_limit_and_named(tmp_path):
    files = {"test_hangs.py": "import time\n\ndef test_hangs():\n    time.sleep(600)\n"}
    done, seconds = run_suite(tmp_path, files, "-o", "timeout=5")
    assert done.returncode != 0
    assert seconds < 120
    # pytest-timeout prints every thread's stack to the test process's terminal, which
    # xdist does not pass on; the run names the test.
    assert "crashed while running 'test_hangs.py::test_hangs'" in done.stdout
