# SparsityLab: `make test` runs every test, `make book` builds the book. Both start from nothing:
# they create .venv, install the pinned dependencies, and make Fashion-MNIST available.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt
export PYTHONHASHSEED := 0

.PHONY: test lint book book-quick lab install system lock clean help

help:
	@echo "make test        run every test (lint, unit, kernels, notebooks in quick mode, book build)"
	@echo "make lint        ruff check and ruff format --check (part of make test)"
	@echo "make book        build the full book into _build/html (chapters executed in full mode; unchanged"
	@echo "                 ones come from the execution cache; FORCE=1 re-executes every chapter)"
	@echo "make book-quick  build a quick-mode preview into _build_quick/html"
	@echo "make lab         open JupyterLab on book/ with the project installed"

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) torch==2.13.0
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[book,test,dev]"
	# torchvision's PyPI wheel is a CUDA build: beside this CPU torch its import fails, and inside
	# the venv it would break transformers' vision models too. The zoo tests import it (and timm)
	# from this folder only (tests/zoo/zoo_libraries.py).
	$(PY) -m pip install -q --no-deps --target $(VENV)/zoo-packages torchvision==0.28.0 timm==1.0.31
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

install: $(STAMP)

system: $(STAMP)
	bash scripts/setup-system.sh $(PY)

# Two pytest workers on two cores: each worker (and each notebook kernel it starts) gets one
# thread. Letting every process use all cores oversubscribes the CPU, and PyTorch's OpenMP
# threads then wait on each other: a LeNet training step measured 5x slower that way.
# `python -P`: the repository root stays off sys.path, so the top-level kernels/ folder (CUDA
# sources) does not shadow the `kernels` package that transformers imports.
test: install system lint
	$(PY) -c "import matplotlib.pyplot"  # warm the font cache outside the timed notebooks
	OMP_NUM_THREADS=1 SPARSITYLAB_QUICK=1 $(PY) -P -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env \
		--durations=15 tests book

# Style is enforced: ruff's lint rules and formatter (pyproject.toml) over the library, tests, chapters
# and exercises.
lint: install
	$(VENV)/bin/ruff check sparsitylab tests book exercises
	$(VENV)/bin/ruff format --check sparsitylab tests book exercises

# MathJax and the widget JavaScript, vendored from the npm registry so the HTML renders offline.
VENDOR := book/_vendor/VERSIONS
$(VENDOR): scripts/vendor/package.json scripts/vendor_assets.sh
	bash scripts/vendor_assets.sh

# Chapters run through Jupyter Book's execution cache: an unchanged chapter is not re-executed.
# scripts/book_cache.sh empties the cache when the library, data or pinned versions change;
# `make book FORCE=1` re-executes everything. (Git-tracked inputs only: commit before trusting it.)
book: install system $(VENDOR)
	bash scripts/book_cache.sh _build
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	$(PY) scripts/book_times.py _build/.jupyter_cache
	@echo "open _build/html/index.html (works offline)"

book-quick: install system $(VENDOR)
	bash scripts/book_cache.sh _build_quick/_build
	SPARSITYLAB_QUICK=1 $(VENV)/bin/jupyter-book build . -W -n --keep-going --path-output _build_quick
	$(PY) scripts/book_times.py _build_quick/_build/.jupyter_cache --limit 120
	@echo "open _build_quick/_build/html/index.html (works offline)"

lab: install system  # (--allow-root only when run as root, e.g. in a container)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=book $(if $(filter 0,$(shell id -u)),--allow-root)

lock:  # refresh the constraints from the current .venv (after changing pyproject.toml)
	$(PY) -m pip freeze --exclude-editable | sed -E 's/^torch==.*/torch==2.13.0/' > $(CONSTRAINTS)

clean:
	rm -rf _build _build_quick _build_test
