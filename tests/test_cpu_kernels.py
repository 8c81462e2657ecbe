"""The numerical kernels run one instruction set on every x86-64 machine (`stages.CPU_KERNELS`), so an AVX-512
machine computes the same float bits as an AVX2 one; a value the user set beforehand wins."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from stages import CPU_KERNELS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import json, os, stages, torch; "
         "print(json.dumps({'env': {k: os.environ.get(k) for k in stages.CPU_KERNELS}, "
         "'aten': torch.backends.cpu.get_cpu_capability()}))")

pytestmark = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                                reason="the pins are for x86-64 (no MKL or AVX elsewhere)")


def probe(**preset: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CPU_KERNELS} | preset
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_stages_pins_mkl_aten_and_openblas_to_avx2():
    seen = probe()
    assert seen["env"] == {"MKL_CBWR": "AVX2,STRICT", "ATEN_CPU_CAPABILITY": "avx2", "OPENBLAS_CORETYPE": "Haswell"}
    assert seen["aten"] == "AVX2"  # torch's own dispatch took the pin


def test_a_kernel_setting_made_before_import_wins():
    seen = probe(ATEN_CPU_CAPABILITY="default")
    assert seen["aten"] == "DEFAULT"
    assert seen["env"]["MKL_CBWR"] == "AVX2,STRICT"
