# The README's commands. Each does its own set-up, so both work on a fresh machine.
VENV := .venv
PY := $(VENV)/bin/python
JOBS ?= 2
BUILD_DIR := build/dev
CMAKE := $(VENV)/bin/cmake

.PHONY: deps install build-cpp test test-cpp test-python demo bench bench-sqlite bench-queues \
  bench-celery bench-processes bench-deps bench-tmdb-standin bench-release-names bench-batcher \
  bench-rate-limit bench-tmdb lint format test-asan test-tsan clean

deps:
	scripts/install-deps.sh

# Installs the package (extension + console script) into .venv, building in build/<wheel tag>
# so that a second install only recompiles what changed.
install: deps
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation .

# The C++ core and its GoogleTest suites, warnings as errors.
build-cpp: deps
	$(CMAKE) -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV)/bin/ninja) \
	  -DCINEJOBS_BUILD_TESTS=ON -DCINEJOBS_BUILD_PYTHON=OFF -DCINEJOBS_WERROR=ON >/dev/null
	$(CMAKE) --build $(BUILD_DIR) -j $(JOBS)

test-cpp: build-cpp
	$(VENV)/bin/ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

test-python: install
	$(PY) -m pytest --durations=15

test: test-cpp test-python

demo: install
	$(VENV)/bin/cinejobs demo

# Benchmarks (bench/README.md): all, or one runner at a time.
bench: bench-sqlite bench-queues bench-celery bench-processes bench-tmdb-standin \
  bench-release-names bench-batcher bench-rate-limit bench-tmdb

bench-sqlite: install
	$(PY) bench/bench_sqlite.py

# What the local TMDB stand-in can serve, and how exactly its rate limit admits.
bench-tmdb-standin: install
	$(PY) bench/bench_tmdb_standin.py
# Items/s through the Batcher into a null sink, a Python callable and a PostgreSQL table.
bench-batcher: install
	$(PY) bench/bench_batcher.py
# Decisions/s of the rate limiter on each store.
bench-rate-limit: install
	$(PY) bench/bench_rate_limit.py

bench-tmdb: bench-deps
	$(PY) bench/bench_tmdb.py

# Celery, RQ, redis-py and matplotlib are for the benchmark only, so `make test` stays lean:
# installed here from pyproject's optional group "bench", not by install-deps.
bench-deps: install
	@$(PY) -c 'import subprocess, sys, tomllib; \
	  deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bench"]; \
	  subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", \
	    "--disable-pip-version-check", *deps])'

bench-queues: bench-deps
	$(PY) bench/bench_queues.py

# celery worker (prefork) against cinejobs worker --celery on one Celery app and redis-server.
bench-celery: bench-deps
	$(PY) bench/bench_celery.py

# cinejobs thread mode and process mode (N = 1, 2) against celery prefork (-c 1, 2), no-op and
# CPU-bound jobs, on one redis-server.
bench-processes: bench-deps
	$(PY) bench/bench_processes.py

bench-release-names: install
	$(PY) bench/bench_release_names.py

lint: deps
	clang-format --dry-run --Werror $$(git ls-files 'cpp/*.cpp' 'cpp/*.hpp' 'tests/cpp/*.cpp')
	$(VENV)/bin/ruff check python tests bench examples scripts
	$(VENV)/bin/ruff format --check python tests bench examples scripts
	$(VENV)/bin/mypy

format: deps
	clang-format -i $$(git ls-files 'cpp/*.cpp' 'cpp/*.hpp' 'tests/cpp/*.cpp')
	$(VENV)/bin/ruff format python tests bench examples scripts

test-asan: deps
	$(CMAKE) -S . -B build/asan -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV)/bin/ninja) \
	  -DCINEJOBS_BUILD_TESTS=ON -DCINEJOBS_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=Debug \
	  -DCINEJOBS_SANITIZE=address,undefined >/dev/null
	$(CMAKE) --build build/asan -j $(JOBS)
	$(VENV)/bin/ctest --test-dir build/asan --output-on-failure

test-tsan: deps
	$(CMAKE) -S . -B build/tsan -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV)/bin/ninja) \
	  -DCINEJOBS_BUILD_TESTS=ON -DCINEJOBS_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=Debug \
	  -DCINEJOBS_SANITIZE=thread >/dev/null
	$(CMAKE) --build build/tsan -j $(JOBS)
	$(VENV)/bin/ctest --test-dir build/tsan --output-on-failure

clean:
	rm -rf build
