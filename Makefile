# The README's commands. Each one sets up what it needs on a fresh clone:
# .venv with the project installed, then the model and voices (labkit assets).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ASSETS := artifacts/assets/.provisioned
UNAME  := $(shell uname -s)
# On the Mac, the Mac batch (CoreML and dual-session sweeps) unless EXPERIMENT is given.
ifeq ($(UNAME),Darwin)
EXPERIMENT ?= experiments/m1max.yaml
else
EXPERIMENT ?= experiments/default.yaml
endif

.PHONY: setup assets journal test test-notebooks lab serve bench doctor clean-artifacts

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
ifeq ($(UNAME),Darwin)
	@# labkit doctor's install-time checks first (macOS version, Python, Xcode tools for pesq)
	$(BIN)/python -m pip install --quiet pyyaml psutil
	$(BIN)/python -m labkit.host.preflight
endif
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (kokoro-lab)" >/dev/null
	touch $(STAMP)

assets: $(ASSETS)

$(ASSETS): $(STAMP)
	$(BIN)/labkit assets --provision

# the plan first (what it will run, the estimated minutes and disk); a plan that cannot be
# made does not stop the run
journal: $(ASSETS)
	-$(BIN)/labkit journal -f $(EXPERIMENT) --plan
	-$(BIN)/labkit journal -f experiments/m1max.yaml --plan --cores 8
	$(BIN)/labkit journal -f $(EXPERIMENT)

test: $(ASSETS)
	$(BIN)/python -m pytest -q

# every stage notebook executed on the smoke batch and read as a page (~7 min more)
test-notebooks: $(ASSETS)
	LABKIT_NOTEBOOK_TESTS=1 $(BIN)/python -m pytest -q -m notebooks

lab: $(ASSETS)
	$(BIN)/jupyter lab notebooks/

serve: $(ASSETS)
	$(BIN)/labkit serve

# make bench BENCH_ARGS="--texts phrase --soak 10": the short form (labkit bench --plan: the estimate)
bench: $(ASSETS)
	$(BIN)/labkit bench $(BENCH_ARGS)

doctor: $(STAMP)
	$(BIN)/labkit doctor

clean-artifacts:
	rm -rf artifacts/*/ artifacts/best.json
