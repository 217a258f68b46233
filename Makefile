# The two commands a new user runs: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-tools bench clean podman-image swe-corpus

install: $(STAMP)

$(STAMP): pyproject.toml
	@scripts/apt-tools.sh bwrap=bubblewrap || echo "oec: the sandbox needs bubblewrap (apt/dnf/brew: bubblewrap)"
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned, so nothing else pulls a newer CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# uv installs the ~150 other packages in under a minute where pip takes two (bench/RESULTS.md §15); it sees torch
	# installed, so it fetches no other build. It reads no pip.conf: set UV_INDEX_URL for a mirror. --compile-bytecode,
	# as pip does: where PYTHONDONTWRITEBYTECODE is set, every process would otherwise compile all it imports.
	$(BIN)/pip install -q uv==0.13.9
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/oec demo

# The docker runtime's tests (tests/test_docker_runtime.py) run on podman with a base image built offline from
# Debian packages: builds the image once (1-2 min, mostly downloads), then a no-op.
podman-image:
	@scripts/podman-image.sh || echo "oec: no podman base image: tests/test_docker_runtime.py will fail (docs/containers.md)"

# The real SWE-bench-format corpus of tests/test_swe_corpus.py (django, sympy, flask from their PyPI sdists, with
# their venvs): built once (~1 min, mostly downloads) into ~/.cache/oec/swe-corpus-1, then a no-op.
swe-corpus: install
	$(BIN)/python scripts/swe_corpus.py

# What the tests need from the system, in one apt-get: the sandbox, a headless browser (the report test renders
# report.html in one), and podman with what builds its base image.
test-tools:
	@scripts/apt-tools.sh bwrap=bubblewrap 'chromium|chromium-browser=chromium' podman=podman runc=runc \
	  debootstrap=debootstrap || echo "oec: some tests will fail without these tools (docs/containers.md)"

# Style (ruff) and the stage packages' layering (import-linter: no cycles) first, then every test. The base image
# downloads while pip does (both mostly wait on the network).
test: test-tools
	@$(MAKE) --no-print-directory -j2 --output-sync=target install podman-image
	@$(MAKE) --no-print-directory swe-corpus
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/lint-imports
	# two workers, each taking whole files (their module fixtures are built once)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

# The quick loop while editing: no system tools (no bubblewrap, podman or chromium), no slow tests; the in-memory
# Env, the formats, the filters, the statistics, the docs. `make test` runs everything.
test-fast: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/python -m pytest -q -n 2 -m "not tools and not slow"

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs/demo
