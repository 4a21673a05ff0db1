# Two commands do everything: `make lab` to read and run the notebooks, `make test` to check the project.
# Both create .venv on first use and install arclib into it (editable, with the notebook and test extras).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.arclib-installed

# The notebooks and the CLI read these; `make test` runs everything in quick mode.
export PLOTLY_RENDERER ?= plotly_mimetype+notebook_connected
export MPLBACKEND ?= Agg

.PHONY: lab test test-numerics unit figures report execute benchmark site colab-check clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,test]'
	@touch $@

lab: $(STAMP)
	MPLBACKEND=module://matplotlib_inline.backend_inline $(BIN)/jupyter lab notebooks/ \
		$(if $(filter 0,$(shell id -u)),--allow-root)

## The whole suite: lint, unit tests, and nbval over every notebook in quick mode.
test: $(STAMP)
	$(BIN)/ruff check arclib tests benchmarks scripts notebooks site
	ARCLIB_QUICK=1 $(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

## nbval over every notebook twice more, in two other numeric configurations: (1) one thread and ATen's and MKL's
## AVX2 kernels (an AVX2-only CPU such as an older AMD EPYC), (2) ATen's scalar kernels (no SIMD) and MKL's
## reproducible "compatible" path. An output that is a rounding residue, a thread count or a timing differs in one
## of them and fails: run it before every commit that touches a notebook (CI runs it after `make test`).
NUMERICS_1 := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2
NUMERICS_2 := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE
NBVAL := ARCLIB_QUICK=1 $(BIN)/python -m pytest notebooks --nbval --nbval-current-env \
	--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider -q
test-numerics: $(STAMP)
	$(NUMERICS_1) $(NBVAL)
	$(NUMERICS_2) $(NBVAL)

unit: $(STAMP)
	ARCLIB_QUICK=1 $(BIN)/python -m pytest tests

## Re-execute every notebook in place (full mode) so the committed outputs are current.
execute: $(STAMP)
	$(BIN)/python scripts/execute_notebooks.py notebooks/*.ipynb

## Every PNG in figures/ from the notebooks run in full mode (slow on a CPU), and figures/MANIFEST.md.
figures: $(STAMP)
	$(BIN)/python scripts/figures.py

## The series as one PDF (introduction, chapters with their committed outputs, conclusion): build/arclib-report.pdf
report: $(STAMP)
	$(BIN)/python scripts/report.py --out build/arclib-report.pdf

## The series as a static website, offline: README as the landing page, chapters with their committed outputs,
## math and plotly served from the site itself (Sphinx + MyST-NB, config in site/): build/site/index.html
site: $(STAMP)
	$(BIN)/python -m sphinx -b html -q -E -W --keep-going -c site . build/site
	@echo "open build/site/index.html"

## Every notebook in quick mode in a venv with Colab's package set and a kernel standing in for Colab (minutes;
## the venv, ~/.cache/arclib/colab-venv, takes about 6 GB). Colab's lists come from ../shared/colab.
colab-check: $(STAMP)
	$(BIN)/python scripts/colab_check.py

benchmark: $(STAMP)
	$(BIN)/python benchmarks/loss_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
