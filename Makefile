# The two commands: `make demo` and `make test`. Both create .venv and install HIE first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install lint typecheck bench drills clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Run the demo production in the foreground (finds or starts a broker).
demo: $(STAMP)
	$(BIN)/hie demo

## Set up and run the whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check hie mllp_gateway tests bench
typecheck: $(STAMP)
	$(BIN)/mypy hie mllp_gateway

## End-to-end bench against baselines B1/B2/B3 (about 12 minutes; BENCH_ARGS, e.g. --mix).
bench: $(STAMP)
	$(BIN)/python bench/e2e.py $(BENCH_ARGS)

## Failure drills on a running production, then two hosts with the link between them cut;
## fails if anything ACKed is lost.
drills: $(STAMP)
	$(BIN)/python bench/faults.py $(DRILLS_ARGS)
	$(BIN)/python bench/two_hosts.py

clean:
	rm -rf $(VENV) var .pytest_cache
