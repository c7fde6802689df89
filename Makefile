# tufoci — the two set-up commands of the README:
#   make demo   install everything and run examples/quickstart end to end
#   make test   install everything and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: setup system-deps venv demo test lint bench bench-results bench-venv clean

setup: system-deps venv

# Debian packages the real-registry paths need (docker-registry, skopeo, umoci, faketime, softhsm2,
# containerd for the mirror's pull tests),
# installed with apt-get when missing and running as root.
system-deps:
	@bash scripts/install-system-deps

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip >/dev/null
	@$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: setup
	@bash examples/quickstart/run.sh

# Test files run in parallel (pytest-xdist, one worker per CPU; a file's tests stay on one worker, which
# keeps module fixtures whole): ~5.5 min instead of ~9.5 min on 2 cores. `pytest tests/test_x.py` runs serially.
test: setup lint
	@$(BIN)/python -m pytest -q -n auto --dist loadfile

# ruff (pyflakes, bugbear, imports, pyupgrade) and mypy over tufoci, tufoci.client and tufoci.repo_tool; both
# configured in pyproject.toml. mypy runs through scripts/typecheck, which explains the package-dir mapping.
lint: venv
	@$(BIN)/ruff check --quiet .
	@MYPY=$(BIN)/mypy scripts/typecheck

# Benchmarks run tufoci as users install it: a regular (wheel) install in its own venv. The editable
# install of $(VENV) adds an import hook that costs every process ~17 ms of start-up.
BENCH_VENV ?= .venv-bench
BENCH_BIN   = $(BENCH_VENV)/bin

# `make bench` writes to bench/out/ (untracked); the committed figures in bench/results/ change only on purpose,
# with `make bench-results` (BENCH_OUT=bench/results).
BENCH_OUT ?= bench/out

bench-venv: system-deps
	@test -x $(BENCH_BIN)/python || $(PYTHON) -m venv $(BENCH_VENV)
	@$(BENCH_BIN)/python -m pip install -q --upgrade pip >/dev/null
	@$(BENCH_BIN)/python -m pip install -q '.[bench]'
	@$(BENCH_BIN)/python -m pip install -q --no-deps --force-reinstall . && rm -rf build

bench: bench-venv
	@mkdir -p $(BENCH_OUT)
	@$(BENCH_BIN)/python bench/verify.py --out $(BENCH_OUT)/verify.json
	@$(BENCH_BIN)/python bench/compare.py --profile --out-dir $(BENCH_OUT)
	@$(BENCH_BIN)/python bench/bins.py --out $(BENCH_OUT)/bins.json
	@echo "results in $(BENCH_OUT)/ ('make bench-results' updates the committed bench/results/)"

bench-results:
	@$(MAKE) --no-print-directory bench BENCH_OUT=bench/results

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache build *.egg-info demo-work
