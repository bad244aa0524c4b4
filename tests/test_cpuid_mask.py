"""experiments/cpuid_mask: a process under the mask sees an AVX2-only CPU (where Linux offers CPUID faulting)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).parents[1] / "experiments" / "cpuid_mask" / "cpuid_mask.c"
# Reads CPUID twice: through torch (cpuinfo, read once at import) and with a CPUID instruction executed now (leaf 7,
# EBX bit 16 = AVX512F), in this process and in a DataLoader worker (a forked child in which PyTorch installs its own
# SIGSEGV handler).
PROBE = """
import ctypes, json, mmap
from torch.utils.data import DataLoader
from mtfcdd.inference.cpu import cpu_flags, hidden_instruction_sets, isa_level

# mov eax, edi; push rbx; xor ecx, ecx; cpuid; mov eax, ebx; pop rbx; ret
CODE = bytes([0x89, 0xF8, 0x53, 0x31, 0xC9, 0x0F, 0xA2, 0x89, 0xD8, 0x5B, 0xC3])
page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(CODE)
cpuid_ebx = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_uint32)(ctypes.addressof(ctypes.c_char.from_buffer(page)))

def avx512f_now():
    return bool(cpuid_ebx(7) & (1 << 16))

class Probe:
    def __len__(self):
        return 2

    def __getitem__(self, index):
        return avx512f_now()

workers = [bool(flag) for batch in DataLoader(Probe(), batch_size=1, num_workers=1) for flag in batch]
print(json.dumps({"flags": sorted(cpu_flags()), "hidden": hidden_instruction_sets(), "tier": isa_level(),
                  "avx512f_now": avx512f_now(), "avx512f_in_worker": workers}))
"""


@pytest.fixture(scope="module")
def mask_library(tmp_path_factory) -> Path:
    library = tmp_path_factory.mktemp("cpuid_mask") / "cpuid_mask.so"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", str(library), str(SOURCE), "-ldl"], check=True
    )
    return library


def _probe(preload: Path | None, level: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "MASK_CPUID_VERBOSE": "1", "CPUID_MASK": level}
    if preload is not None:
        env["LD_PRELOAD"] = str(preload)
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)


LATER_THAN_AVX2 = {"avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}
LATER_THAN_SKYLAKE = LATER_THAN_AVX2 - {"avx512f", "avx512bw"}


@pytest.mark.parametrize("level", ["", "avx2", "avx512"])
def test_the_mask_hides_later_instruction_sets_from_every_cpuid_reader(mask_library, level):
    plain = _probe(None)
    assert plain.returncode == 0, plain.stderr
    masked = _probe(mask_library, level)
    if " cpuid_fault" not in Path("/proc/cpuinfo").read_text():  # no CPUID faulting: the mask refuses, saying why
        assert masked.returncode == 2 and "CPUID faulting is not available" in masked.stderr
        return
    assert masked.returncode == 0, masked.stderr
    assert "hidden from CPUID" in masked.stderr
    before, after = json.loads(plain.stdout), json.loads(masked.stdout)
    hidden = LATER_THAN_SKYLAKE if level == "avx512" else LATER_THAN_AVX2
    assert set(after["flags"]) == set(before["flags"]) - hidden
    assert set(after["hidden"]) == set(before["flags"]) - set(after["flags"])
    if level == "avx512" and "avx512f" in before["flags"]:
        assert after["tier"] == "avx512"
    else:
        assert after["tier"] == ("avx2" if "avx2" in before["flags"] else "other")
    for run in (before, after):  # torch's view = the CPUID instruction's, in the process and in its worker
        assert run["avx512f_now"] == ("avx512f" in run["flags"])
        assert run["avx512f_in_worker"] == [run["avx512f_now"]] * 2


def test_an_unknown_mask_level_is_refused(mask_library):
    masked = _probe(mask_library, "avx10")
    assert masked.returncode == 2
    assert "CPUID_MASK=avx10: expected avx2 or avx512" in masked.stderr
