# Two commands set up everything on a fresh machine (see README):
#   make demo   install, build, run the main job on the bundled Cora
#   make test   install, build, run the whole test suite
# Every install uses --no-build-isolation so the build sees the installed torch, and torch
# itself is installed (the pinned CPU build) only when no torch is present.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
TORCH_VERSION ?= 2.13.0
BENCH_JSON ?=

.PHONY: all deps install test demo bench info cuda-check cmake clean

all: install

deps:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==$(TORCH_VERSION)
	@$(PYTHON) -c "import numpy, scipy, tqdm, pytest, expecttest, ninja, setuptools, wheel" 2>/dev/null || \
		$(PIP) install numpy scipy tqdm pytest expecttest ninja setuptools wheel
	@$(PYTHON) -c "import torch_scatter" 2>/dev/null || \
		$(PIP) install --no-build-isolation torch-scatter

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

# The CMake target (C++ shared library) on CPU.
cmake: deps
	cmake -S . -B build-cmake -DCMAKE_PREFIX_PATH="$$($(PYTHON) -c 'import torch; print(torch.utils.cmake_prefix_path)')"
	cmake --build build-cmake -j2

clean:
	rm -rf build build-cmake *.egg-info gkd_ext/*.so
