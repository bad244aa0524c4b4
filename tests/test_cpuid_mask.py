"""experiments/cpuid_mask: a process under the mask sees an AVX2-only CPU (where Linux offers CPUID faulting)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).parents[1] / "experiments" / "cpuid_mask" / "cpuid_mask.c"
PROBE = (
    "import json; from mtfcdd.inference.cpu import cpu_flags, hidden_instruction_sets, isa_level; "
    "print(json.dumps({'flags': sorted(cpu_flags()), 'hidden': hidden_instruction_sets(), 'tier': isa_level()}))"
)


@pytest.fixture(scope="module")
def mask_library(tmp_path_factory) -> Path:
    library = tmp_path_factory.mktemp("cpuid_mask") / "cpuid_mask.so"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", str(library), str(SOURCE)], check=True)
    return library


def _probe(preload: Path | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MASK_CPUID_VERBOSE": "1"}
    if preload is not None:
        env["LD_PRELOAD"] = str(preload)
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)


def test_the_mask_hides_avx512_and_vnni_from_every_cpuid_reader(mask_library):
    plain = _probe(None)
    assert plain.returncode == 0, plain.stderr
    masked = _probe(mask_library)
    cpuinfo = Path("/proc/cpuinfo").read_text()
    if " cpuid_fault" not in cpuinfo:  # no CPUID faulting on this CPU: the mask refuses to run, and says why
        assert masked.returncode == 2 and "CPUID faulting is not available" in masked.stderr
        return
    assert masked.returncode == 0, masked.stderr
    assert "hidden from CPUID" in masked.stderr
    before, after = json.loads(plain.stdout), json.loads(masked.stdout)
    assert not {"avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16"} & set(after["flags"])
    assert after["tier"] == ("avx2" if "avx2" in before["flags"] else "other")
    assert set(after["flags"]) == set(before["flags"]) - {
        "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}
    assert set(after["hidden"]) == set(before["flags"]) - set(after["flags"])
