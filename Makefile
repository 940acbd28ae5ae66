# Trainyard. Two commands on a fresh machine:  make demo  (set up and run the main job here)  and  make test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/openpi_pi05_lora.yaml
EXP ?= my_run
TRIALS ?= 50

.PHONY: setup setup-system test test-fast reliability demo bench chtc-submit clean

setup: $(VENV)/.installed  ## the tool's own environment (.venv)

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

setup-system:  ## Debian packages the tests use (sshd, rsync, ...); SLURM is installed by its own test script
	@pkgs=$$(grep -v '^#' packages.apt | xargs); \
	if dpkg -s $$pkgs >/dev/null 2>&1; then echo "system packages present: $$pkgs"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null; \
	else echo "as root, run: apt-get install $$pkgs"; exit 1; fi

test: setup setup-system  ## the whole suite (what CI runs)
	$(BIN)/pytest -q -p no:cacheprovider tests

test-fast: setup  ## unit tests only: no SLURM, no LeRobot, no emulated instances
	$(BIN)/pytest -q -p no:cacheprovider -m "not slow" tests

reliability: setup setup-system  ## fault trials (TRIALS=50, CI runs 6), dead-man, secret canaries, config fuzzing, partial uploads
	$(BIN)/pytest -q -p no:cacheprovider tests/reliability --trials=$(TRIALS)

demo: setup  ## the main job on the embedded default: LeRobot ACT on CPU, synced checkpoints, resume
	$(BIN)/invoke local.demo

bench: setup  ## benchmarks; results in bench/RESULTS.md
	$(BIN)/python -m bench

chtc-submit: setup  ## render chtc/train.sub from CONFIG and condor_submit it (on the CHTC submit node)
	$(BIN)/invoke chtc.submit --config $(CONFIG) --exp-name $(EXP)

clean:
	rm -rf runs outputs .pytest_cache
