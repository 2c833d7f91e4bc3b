# Two commands are all a new user needs:
#   make run    build the environment if missing, run the whole workflow on the demo config
#   make test   build the environment if missing, run the test suite
# and one for before a commit:
#   make check  lint, then the unit tests (tests/unit): under two minutes on two cores
#
# MXNET picks the MXNet build: cpu (default), cu102 (CUDA 10.2: V100, T4), cu112 (CUDA 11.2: A100).
# No MXNet build on PyPI supports Hopper (H100) GPUs; NVIDIA's NGC MXNet containers 24.05/24.06 do.
MXNET ?= cpu
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(MXNET)
CORES ?= all
PYTEST_ARGS ?=
# Test processes (pytest-xdist), each running whole test files: most tests wait on
# subprocesses (Snakemake, SLURM's status checks, launched workers) about half the time.
TEST_WORKERS ?= 2

.PHONY: run test check clean-results

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else \
	  "Python %d.%d is not supported: this project needs Python 3.11. Snakemake 9 needs >= 3.11, " \
	  "and MXNet 1.9.1 needs numpy < 1.24, which has no wheels for Python 3.12 or newer. " \
	  "Run make with PYTHON=/path/to/python3.11." % v)'
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	@# Every flavour installs the same `mxnet` module: remove another one before switching.
	@if ls $(VENV)/.installed-* >/dev/null 2>&1; then \
	  $(VENV)/bin/python -m pip uninstall --quiet --yes mxnet mxnet-cu102 mxnet-cu112; fi
	$(VENV)/bin/python -m pip install --quiet -e ".[$(MXNET),test]"
	@rm -f $(VENV)/.installed-*
	@touch $@

run: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES)
	$(VENV)/bin/snakemake --report results/report.html
	@echo
	@echo "Results are in results/: tables and graphs in results/report/, the browsable report in results/report.html."

test: $(STAMP)
	$(VENV)/bin/python -m pytest --numprocesses $(TEST_WORKERS) $(PYTEST_ARGS)

# The linters test_style.py runs, then the unit tier (no Snakemake, no subprocess).
check: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks workflow
	$(VENV)/bin/ruff format --check src tests benchmarks workflow/scripts
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	$(VENV)/bin/python -m pytest --numprocesses $(TEST_WORKERS) $(PYTEST_ARGS) tests/unit

clean-results:
	rm -rf results logs resources/demo .snakemake
