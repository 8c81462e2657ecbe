"""DVC stage entry points (one module per stage) and their shared library (`stages.lib`)."""

import os
import platform

# OpenMP threads that spin while waiting starve each other (and any other process) on a small
# machine; an XGBoost fold took ~20x longer beside a busy process. Sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# One instruction set for the numerical kernels on every x86-64 machine. MKL (torch's BLAS), ATen's vectorised
# kernels and OpenBLAS (numpy's) otherwise choose AVX-512 or AVX2 code by CPU, and the two round differently: the
# frozen embeddings of an Intel Xeon (AVX-512) and of an AMD EPYC (AVX2) were not the same bytes. AVX2 runs on
# both; a value already in the environment wins. Read before torch or numpy load, so set on importing `stages`.
CPU_KERNELS = {"MKL_CBWR": "AVX2,STRICT", "ATEN_CPU_CAPABILITY": "avx2", "OPENBLAS_CORETYPE": "Haswell"}


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            return any(line.startswith("flags") and " avx2" in line and " fma" in line for line in info)
    except OSError:
        return False


if platform.machine().lower() in ("x86_64", "amd64") and _has_avx2():
    for _name, _value in CPU_KERNELS.items():
        os.environ.setdefault(_name, _value)
