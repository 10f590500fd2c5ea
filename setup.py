"""Build gkd_ext and its extension module gkd_ext._C.

CUDA kernels are built when the CUDA toolkit is found *and* the installed torch is a CUDA
build; FORCE_CUDA=1 or FORCE_CPU=1 override that decision. The decision is printed.
Install with `pip install --no-build-isolation .` so the build uses the installed torch.
"""
import glob
import os
import sys

from setuptools import find_packages, setup

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _want_cuda():
    if _flag("FORCE_CPU"):
        return False, "FORCE_CPU=1"
    if _flag("FORCE_CUDA"):
        if CUDA_HOME is None:
            sys.exit("setup.py: FORCE_CUDA=1 but no CUDA toolkit was found (set CUDA_HOME)")
        return True, "FORCE_CUDA=1"
    if CUDA_HOME is None:
        return False, "no CUDA toolkit found"
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a CPU build"
    return True, f"CUDA toolkit at {CUDA_HOME} and torch built with CUDA {torch.version.cuda}"


def _extension():
    with_cuda, why = _want_cuda()
    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    # The CPU kernels are memory- and gather-bound loops that the compiler vectorises; building
    # for the build machine's ISA (AVX2/AVX-512 where present) roughly halves their time.
    # GKD_CPU_ARCH=portable builds for the baseline x86-64/aarch64 ISA instead (for wheels).
    cpu_arch = os.environ.get("GKD_CPU_ARCH", "native")
    cxx = ["-O3", "-std=c++20", "-fopenmp"]
    if cpu_arch != "portable":
        cxx.append(f"-march={cpu_arch}")
    extra = {"cxx": cxx}
    kwargs = dict(extra_link_args=["-fopenmp"], py_limited_api=True)
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            # No GPU to query: an empty arch list crashes torch's build helper.
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
        extra["nvcc"] = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"]
        ext = CUDAExtension("gkd_ext._C", sources, extra_compile_args=extra, **kwargs)
    else:
        ext = CppExtension("gkd_ext._C", sources, extra_compile_args=extra, **kwargs)
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "-") if with_cuda else "-"
    print(f"gkd_ext setup: CUDA kernels {'ON' if with_cuda else 'OFF'} ({why}); "
          f"arch list {arch}; CPU ISA {cpu_arch}; {len(sources)} sources; OpenMP on", flush=True)
    return ext


setup(
    name="gkd_ext",
    packages=find_packages(include=["gkd_ext", "gkd_ext.*"]),
    package_data={"gkd_ext": ["data/*.npz"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
