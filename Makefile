# The README's commands. Each one sets up what it needs on a fresh clone:
# .venv with the project installed, then the model and voices (labkit assets).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ASSETS := artifacts/assets/.provisioned
EXPERIMENT ?= experiments/default.yaml

.PHONY: setup assets journal test lab serve bench clean-artifacts

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (kokoro-lab)" >/dev/null
	touch $(STAMP)

assets: $(ASSETS)

$(ASSETS): $(STAMP)
	$(BIN)/labkit assets --provision

journal: $(ASSETS)
	$(BIN)/labkit journal -f $(EXPERIMENT)

test: $(ASSETS)
	$(BIN)/python -m pytest -q

lab: $(ASSETS)
	$(BIN)/jupyter lab notebooks/

serve: $(ASSETS)
	$(BIN)/labkit serve

bench: $(ASSETS)
	$(BIN)/labkit bench

clean-artifacts:
	rm -rf artifacts/*/ artifacts/best.json
