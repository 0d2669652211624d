# The only install logic in the project. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# Torch build to install first; override for another CUDA/CPU build, e.g.
#   make setup TORCH_SPEC="torch==2.5.1 torchvision==0.20.1 --index-url https://download.pytorch.org/whl/cu124"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE=1
export HF_HUB_OFFLINE=1
export WANDB_MODE=disabled
export PYTHONUNBUFFERED=1

.PHONY: setup test test-slow test-gpu bench-gpu gpu-model demo bench bench-train tables-synthetic simulations parity lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev,integrations]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -m "not slow and not gpu"

test-slow: setup
	$(PY) -m pytest -q -m "slow"

test-gpu: setup
	$(PY) -m pytest -q -m "gpu"

# Modelled H100 cost of every solver, counted on the CPU (results/gpu_cost_model.md; no GPU needed).
gpu-model: setup
	$(PY) scripts/bench_gpu_model.py --out results/gpu_cost_model.md

# On a CUDA machine: solver and evaluation timings on the GPU (GPU_NAME names the result files).
GPU_NAME ?= h100
bench-gpu: setup
	$(PY) scripts/bench_solvers.py --device cuda --out results/solver_benchmark_$(GPU_NAME).md
	$(PY) scripts/bench_evaluate.py --device cuda --out results/evaluate_benchmark_$(GPU_NAME).md

demo: setup
	$(PY) scripts/demo.py

bench: setup
	$(PY) scripts/bench_solvers.py

bench-train: setup
	$(PY) scripts/bench_train.py --device cpu --out results/train_cost_cpu.md

tables-synthetic: setup
	$(PY) scripts/make_synthetic_table.py --out results/synthetic_table

simulations: setup
	$(PY) scripts/simulations.py example1 --out results/simulations
	$(PY) scripts/simulations.py example2 --out results/simulations

# The PyPI release 0.0.8 next to ours (results/official_parity.md); it is installed into the git-ignored .whl/.
OFFICIAL ?= .whl/official
PARITY_CALLS ?= 20000
parity: setup
	test -d $(OFFICIAL)/rankseg || $(PY) -m pip install -q --no-deps --target $(OFFICIAL) rankseg==0.0.8
	$(PY) scripts/parity/harness.py --official $(OFFICIAL) --calls $(PARITY_CALLS) --out results/official_parity.md

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
