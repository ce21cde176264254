# Pipeline of the project: `make help` lists the targets.
# PROFILE=smoke (default: synthetic LaMP-format corpus, packaged SmolLM2, CPU, minutes)
# PROFILE=lamp-cpu (real LaMP files placed under data/raw/lamp, packaged models, user sample, CPU)
# PROFILE=lamp-cpu-test (lamp-cpu with one policy: what make test-lamp-cpu runs on a real-layout fixture).
# PROFILE=paper (real LaMP download, Qwen2.5 0.5B-7B, GPU, hours).
# PROFILE=paper-dry (configs/paper.yaml on tiny random checkpoints of its model families and small local files, CPU,
#   minutes: what make test-paper-dry runs).
# PROFILE=tldr-real (real TL;DR annotators placed under data/raw/tldr, packaged models, CPU; notebooks 02, 04, 06).
# DATA_ROOT=DIR puts data/, figures/ and build/ under DIR instead of the repository (make test-lamp-cpu uses it).
# A run writes only git-ignored places: data/processed/PROFILE, data/cache, build/PROFILE (the executed notebooks and
# build/PROFILE/figures, this run's tables and figures). The committed results (figures/PROFILE, the kept headline
# outputs of notebooks/, the README's results block) change only with `make refresh-results`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PROFILE ?= smoke
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG := configs/$(PROFILE).yaml
DATA_ROOT ?= .
DATA := $(DATA_ROOT)/data/processed/$(PROFILE)
FIG := $(DATA_ROOT)/build/$(PROFILE)/figures
RESULTS := $(DATA_ROOT)/figures/$(PROFILE)
LIB := $(wildcard lib/*.py lib/*/*.py)
RUN := $(PY) -m lib.core.pipeline --profile $(PROFILE)
export PYTHONHASHSEED := 0
export TOKENIZERS_PARALLELISM := false
export HF_HUB_DISABLE_TELEMETRY := 1
ifneq ($(DATA_ROOT),.)
export PRC_ROOT := $(abspath $(DATA_ROOT))
endif

# The artifact each notebook writes: Make re-runs a notebook only when an input is newer. Only notebook 06 writes
# figures (into $(FIG)): it reads the artifacts of 01 (manifest), 02 (index, accuracy.csv), 03 (decodes.csv), 04 and 05. Notebook 05
# reads 04's eval/deployed_settings.csv (each reward model's one deployed setting), so it runs after 04.
PREFLAMP := $(DATA)/preflamp/manifest.json
RMS := $(DATA)/rms/index.csv
RGD := $(DATA)/rgd/decodes.csv
POLACC := $(DATA)/eval/policy_accuracy.csv
GEN := $(DATA)/eval/generations.csv
FIGS := $(FIG)/summary.md
PARAMS := $(DATA_ROOT)/build/$(PROFILE)/params
# A profile's `stages: [...]` line (configs/tldr-real.yaml: 02, 04 and 06 only; lib.core.config checks the line);
# none: every notebook. $(call stage,NN,FILE) is FILE when the profile runs notebook NN, else nothing.
STAGES := $(shell sed -n 's/^stages: *\[\([^]]*\)\].*/\1/p' $(CONFIG) 2>/dev/null | tr ',' ' ')
stage = $(if $(STAGES),$(if $(filter $(1)_%,$(STAGES)),$(2)),$(2))
# A profile that `extends: <parent>` (configs/paper-dry.yaml: paper) is re-run when the parent's file changes too.
EXTENDS := $(shell sed -n 's/^extends: *\([A-Za-z0-9_.-]*\).*/\1/p' $(CONFIG) 2>/dev/null)
CONFIGS := $(CONFIG) $(if $(EXTENDS),configs/$(EXTENDS).yaml)

# A notebook that fails after writing its target file (a 1-byte rms/index.csv, say) must not leave Make believing
# the stage is done: Make deletes the target of a failed recipe.
.DELETE_ON_ERROR:

.PHONY: help setup data rms rgd policy-accuracy generation figures all refresh-results test lint test-unit test-notebooks \
        test-lamp-cpu test-paper-dry bench strip clean distclean readme artifacts

help: ## Show this help
	@echo "usage: make [target] [PROFILE=smoke|lamp-cpu|lamp-cpu-test|tldr-real|paper|paper-dry] [DATA_ROOT=.]"
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

setup: $(VENV)/.installed ## Create .venv with the pinned, tested environment (runs once)

$(VENV)/.installed: requirements.txt requirements-models.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-models.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (rm-selection-crisis)" >/dev/null
	touch $@

data: $(PREFLAMP) ## Build Pref-LaMP (notebook 01)
rms: $(RMS) ## Train every reward model and measure RM accuracy (notebook 02)
rgd: $(RGD) ## Reward-guided decoding side by side (notebook 03)
policy-accuracy: $(POLACC) ## Policy accuracy and its Kendall tau with RM accuracy (notebook 04)
generation: $(GEN) ## Base / RGD / ICL generations scored against the users' outputs (notebook 05)
figures: $(FIGS) ## Every table and figure from cached artifacts (notebook 06) into build/PROFILE/figures

all: setup figures $(call stage,03,$(RGD)) ## Run the whole pipeline for PROFILE (setup first when needed), then report how it differs from the committed results
	@$(PY) -m lib.report.outputs report --profile $(PROFILE)
	@echo "done: figures and tables of profile $(PROFILE) under $(FIG)/ (committed results: $(RESULTS)/)"

# The only target that rewrites committed files: figures/PROFILE becomes a copy of this run's build/PROFILE/figures,
# the kept headline outputs of the executed smoke notebooks go into notebooks/ (nbval's reference), and the README's
# results block is rebuilt from figures/PROFILE/summary.md. Review with `git diff`, then commit.
refresh-results: all ## Make this run the committed results: figures/PROFILE, the kept notebook outputs (smoke), the README block
	$(PY) -m lib.report.outputs refresh --profile $(PROFILE)
	$(PY) scripts/update_readme.py --profile $(PROFILE)

readme: | setup ## Rebuild the README's results block from the committed figures/PROFILE/summary.md
	$(PY) scripts/update_readme.py --profile $(PROFILE)

# An unknown PROFILE names the known ones instead of make's "No rule to make target 'configs/nope.yaml'".
configs/%.yaml:
	@echo "unknown profile '$*': there is no configs/$*.yaml; known profiles: $(sort $(basename $(notdir $(wildcard configs/*.yaml))))" >&2; exit 2

# Each notebook depends on its own parameters, not on the whole profile file: $(PARAMS)/<notebook>.json holds what
# papermill injects into it (common + its section), rewritten only when that changes (GNU Make then sees an unchanged
# file, and editing 05's section re-runs 05 and 06, not 01-04).
$(PARAMS)/%.json: $(CONFIGS) | setup
	@$(PY) -m lib.core.pipeline $* --profile $(PROFILE) --write-params $@

$(PREFLAMP): notebooks/01_build_pref_lamp.ipynb $(PARAMS)/01_build_pref_lamp.json $(LIB) | setup
	$(RUN) 01_build_pref_lamp
$(RMS): notebooks/02_train_reward_models.ipynb $(call stage,01,$(PREFLAMP)) $(PARAMS)/02_train_reward_models.json $(LIB) | setup
	$(RUN) 02_train_reward_models
$(RGD): notebooks/03_reward_guided_decoding.ipynb $(RMS) $(PARAMS)/03_reward_guided_decoding.json $(LIB) | setup
	$(RUN) 03_reward_guided_decoding
$(POLACC): notebooks/04_policy_accuracy.ipynb $(RMS) $(PARAMS)/04_policy_accuracy.json $(LIB) | setup
	$(RUN) 04_policy_accuracy
$(GEN): notebooks/05_generation.ipynb $(RMS) $(POLACC) $(PARAMS)/05_generation.json $(LIB) | setup
	$(RUN) 05_generation
$(FIGS): notebooks/06_figures_tables.ipynb $(call stage,01,$(PREFLAMP)) $(RMS) $(call stage,03,$(RGD)) $(POLACC) \
         $(call stage,05,$(GEN)) $(PARAMS)/06_figures_tables.json $(LIB) | setup
	$(RUN) 06_figures_tables

# scripts/pack_artifacts.py: real-LaMP profiles leave out every *.jsonl (LaMP's and the preference sets' text, whose
# licenses forbid redistribution) and the decodes and generations; the synthetic smoke corpus is packed whole.
artifacts: $(RMS) | setup ## Pack data/processed/PROFILE (the outputs of notebooks 01-05 that exist: what 02-06 start from) into build/artifacts-PROFILE.tar.gz
	$(PY) scripts/pack_artifacts.py --profile $(PROFILE) --out $(DATA_ROOT)/build/artifacts-$(PROFILE).tar.gz

# make test (= CI) leaves test-lamp-cpu out; it was taken out while nbval took 45.6 min of CI's hour (26.8 min now): the real
# LaMP layout and its quirks run in test-paper-dry (the same fixture, tests/real_lamp_fixture.py), the packaged models
# in the notebooks; run `make test-lamp-cpu` (about 14 min) after changing the LaMP route.
# The unit tests and test-paper-dry run side by side, one thread each: both are mostly single-threaded Python and tiny
# models, so either alone leaves the second core idle (one after the other they took 14 of CI's minutes). Each one's
# output is printed whole when it ends (--output-sync). Then the notebooks run alone, with both cores.
test: setup lint ## Unit tests and the paper profile on tiny checkpoints (side by side), then every notebook as stored (nbval checks the kept headline numbers)
	@start=$$(date +%s) && \
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(MAKE) --no-print-directory -j2 --output-sync=target test-unit test-paper-dry && \
	echo "[test] unit tests and test-paper-dry side by side: $$(( $$(date +%s) - start )) s" && \
	$(MAKE) --no-print-directory test-notebooks && \
	echo "[test] passed in $$(( $$(date +%s) - start )) s"

lint: | setup ## Static checks (ruff, configured in pyproject.toml)
	$(VENV)/bin/ruff check lib scripts tests

test-unit: | setup ## Unit tests only
	$(PY) -m pytest tests -q --durations=8

# Progress bars are off under nbval (TQDM_DISABLE, read by lib/core/progress.py: tqdm's notebook bars ignore it;
# HF_HUB_DISABLE_PROGRESS_BARS for transformers' "Loading weights"):
# nobody watches them there, and the thousands of widget messages they stream overflow the kernel's IOPub
# queue; the lost idle message failed two CI runs after 02's feature cell ("Timeout of 120 seconds exceeded
# waiting for output").
# nbval runs in a temporary copy (PRC_ROOT points lib.core.config there), so a test run never rewrites data/ or
# build/; data/cache is copied when present (content-keyed features and generations: after
# `make all` the notebooks re-run from them). Settings: notebooks/pytest.ini. Afterwards the figures the run wrote are
# compared byte for byte with the committed figures/smoke (scripts/compare_figures.py; a report: a CPU with other
# vector instructions may round the last bit of a float differently).
test-notebooks: | setup ## Execute every notebook as stored (smoke defaults) in a temporary copy; nbval compares the kept headline outputs
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && cp -r notebooks "$$tmp/notebooks" && mkdir -p "$$tmp/data" && \
	if [ -d data/cache ]; then cp -r data/cache "$$tmp/data/cache"; fi && \
	echo "[test-notebooks] in $$tmp (data/cache copied: $$([ -d data/cache ] && echo yes || echo no))" && \
	(cd "$$tmp/notebooks" && PRC_ROOT="$$tmp" TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1 $(abspath $(PY)) -m pytest .) && \
	$(PY) scripts/compare_figures.py figures/smoke "$$tmp/build/smoke/figures"

# The lamp-cpu profile end to end (every notebook, through Make) on a small LaMP fixture in the official layout with
# real-data properties (few profile items, shared headlines, an empty gold, a very long input), in a temporary
# DATA_ROOT; then every artifact is checked for sanity (lib/report/sanity.py). It runs configs/lamp-cpu-test.yaml:
# lamp-cpu with SmolLM2 as the only policy (and Gemma not as a backbone), so that CI stays within its hour;
# tests/test_lamp_cpu_test.py keeps every other setting lamp-cpu's.
test-lamp-cpu: | setup ## make figures PROFILE=lamp-cpu-test (lamp-cpu, one policy) on a real-layout LaMP fixture in a temporary folder, then check every artifact
	@start=$$(date +%s) && tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) tests/real_lamp_fixture.py "$$tmp/data/raw/lamp" && \
	TQDM_DISABLE=1 $(MAKE) --no-print-directory figures rgd PROFILE=lamp-cpu-test DATA_ROOT="$$tmp" && \
	$(PY) -m lib.report.sanity --profile lamp-cpu-test --root "$$tmp" && \
	echo "[test-lamp-cpu] passed in $$(( $$(date +%s) - start )) s"

# The paper profile end to end on a CPU (configs/paper-dry.yaml: configs/paper.yaml with its models mapped to tiny random
# checkpoints of the same families, written once into .cache/models/paper-dry by tests/tiny_checkpoints.py, its
# preference sets and LaMP read from small local files in the hub and official layouts, tests/paper_dry_fixture.py),
# every notebook through Make in a temporary DATA_ROOT, offline; then the sanity checks, and tests/check_paper_dry.py
# asserts from the artifacts every route the GPU run takes (LoRA reward models, RGD paths a, b and c, four policies,
# the size plot) and lists them. The run's wall time is printed last. One thread per process: the tiny models gain
# nothing from a second one, and a busy machine's two-thread slowdown would not hide the run's own cost.
test-paper-dry: | setup ## make figures rgd PROFILE=paper-dry (the paper profile on tiny checkpoints) in a temporary folder, then assert every route it took
	@start=$$(date +%s) && tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) tests/tiny_checkpoints.py && \
	$(PY) tests/paper_dry_fixture.py "$$tmp" && \
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	  $(MAKE) --no-print-directory figures rgd PROFILE=paper-dry DATA_ROOT="$$tmp" && \
	$(PY) -m lib.report.sanity --profile paper-dry --root "$$tmp" && \
	$(PY) tests/check_paper_dry.py --root "$$tmp" && \
	echo "[test-paper-dry] passed in $$(( $$(date +%s) - start )) s"

bench: | setup ## Benchmarks: RGD decoding paths, batched teacher forcing, multi-RM generation (ratios vs baselines)
	$(PY) scripts/bench_rgd.py

strip: | setup ## Strip outputs from the notebooks, except the kept headline cells (run before committing)
	$(VENV)/bin/nbstripout notebooks/*.ipynb

clean: ## Remove the executed notebooks, processed data and figures of PROFILE's run (never the committed results)
	rm -rf $(DATA_ROOT)/build/$(PROFILE) $(DATA)

distclean: clean ## Also remove the venv, model and generation caches and raw data
	rm -rf $(VENV) .cache data/cache data/raw build
