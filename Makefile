# Two commands set up everything on a fresh machine (see README):
#   make demo   install, build, run the main job on the bundled Cora
#   make test   install, build, run the whole test suite
# Every install uses --no-build-isolation so the build sees the installed torch, and torch
# itself is installed (the pinned CPU build) only when no torch is present.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
TORCH_VERSION ?= 2.13.0
BENCH_JSON ?=
OUT ?= build/gpu-check
DRY_RUN ?=
GPU_CHECK_BUDGET ?=
STAGES ?=

.PHONY: all deps install test demo bench info cuda-check cmake gpu-check clean

all: install

deps:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==$(TORCH_VERSION)
	@$(PYTHON) -c "import numpy, scipy, tqdm, pytest, expecttest, ninja, setuptools, wheel, pyflakes" 2>/dev/null || \
		$(PIP) install numpy scipy tqdm pytest expecttest ninja setuptools wheel pyflakes
	@$(PYTHON) -c "import torch_scatter" 2>/dev/null || \
		$(PIP) install --no-build-isolation torch-scatter
	@$(PYTHON) -c "import torch_geometric" 2>/dev/null || \
		$(PIP) install torch-geometric

install: deps
	$(PIP) install --no-build-isolation --no-deps -e .

test: install
	$(PYTHON) -m pytest -q tests

demo: install
	$(PYTHON) -m gkd_ext demo

bench: install
	$(PYTHON) bench/bench_spmm.py $(if $(BENCH_JSON),--json $(BENCH_JSON)/spmm.json)

info: install
	$(PYTHON) -m gkd_ext.info

# Compile-only check of every CUDA source with nvcc (sm_80, sm_90); needs no GPU.
cuda-check: deps
	bash .ci/compile_cuda.sh

# The whole GPU verification in one command (bench/gpu_check.py): build in place for this GPU,
# every CUDA test case, the benchmarks at GPU sizes, result files in $(OUT). Installs nothing
# and needs no network (no deps prerequisite). DRY_RUN=1: the same stages on a CPU machine at
# tiny sizes, CUDA-only parts skipped (saying why); the suite runs it. STAGES=tests,bench_spmm
# runs only those stages (after the probe), e.g. again on a machine that already has the build.
gpu-check:
	$(PYTHON) -u bench/gpu_check.py --out "$(OUT)" $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run) \
		$(if $(GPU_CHECK_BUDGET),--budget $(GPU_CHECK_BUDGET)) $(if $(STAGES),--only $(STAGES))

# The CMake target (C++ shared library) on CPU.
cmake: deps
	cmake -S . -B build-cmake -DCMAKE_PREFIX_PATH="$$($(PYTHON) -c 'import torch; print(torch.utils.cmake_prefix_path)')"
	cmake --build build-cmake -j2

clean:
	rm -rf build build-cmake *.egg-info gkd_ext/*.so
