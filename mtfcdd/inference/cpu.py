"""What the CPU offers the inference engines: physical cores (from /proc/cpuinfo) and instruction sets (from the
CPUID instruction, as the runtimes' kernels see them).

``isa_level()`` names the tier an engine choice depends on: ``avx512_vnni`` (int8 dot products without
saturation), ``avx512`` (AVX-512 without VNNI), ``avx2`` or ``other``; ``native_bf16`` tells whether bf16 runs in
hardware (AVX-512 BF16 or AMX) rather than emulated by oneDNN.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

ISA_LEVELS = ("avx512_vnni", "avx512", "avx2", "other")


def physical_cores() -> int:
    """Physical CPU cores this process may run on (hyper-threads not counted); ``os.cpu_count()`` if unknown."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        allowed = None
    cores: set[tuple[str, str]] = set()
    try:
        processor = physical = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines() + [""]:
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "processor":
                processor = int(value)
            elif key == "physical id":
                physical = value
            elif key == "core id":
                core = value
            elif not line.strip() and processor is not None:
                if core is not None and (allowed is None or processor in allowed):
                    cores.add((physical or "0", core))
                processor = physical = core = None
    except (OSError, ValueError):
        cores = set()
    if cores:
        return len(cores)
    return len(allowed) if allowed else (os.cpu_count() or 1)


def _cpuinfo_field(key: str) -> str | None:
    """The value of the first line of /proc/cpuinfo that starts with ``key`` (None where unknown)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name (e.g. ``Intel(R) Xeon(R) CPU @ 2.80GHz``), else what ``platform`` knows."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def _listed_flags() -> set[str]:
    """The feature flags /proc/cpuinfo lists (the host's, even under an emulator)."""
    return set((_cpuinfo_field("flags") or "").split())


# torch.cpu.get_capabilities() keys -> the /proc/cpuinfo flag names used here
_CAPABILITY_FLAGS = {
    "avx2": "avx2",
    "fma3": "fma",
    "avx512_f": "avx512f",
    "avx512_bw": "avx512bw",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx_bf16": "amx_bf16",
    "amx_int8": "amx_int8",
}


def cpu_flags() -> set[str]:
    """The CPU feature flags this process can execute, named as in /proc/cpuinfo (empty where unknown).

    Read from the CPUID instruction through ``torch.cpu.get_capabilities()`` (the cpuinfo library), as ONNX Runtime,
    oneDNN, OpenVINO and ATen read it to choose their kernels, so an emulated or masked CPU (``qemu-x86_64 -cpu
    Haswell``, Intel SDE, experiments/cpuid_mask) reports what it emulates while /proc/cpuinfo still lists the
    host's flags. An older torch without that call: /proc/cpuinfo.
    """
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:
        return _listed_flags()
    found = capabilities()
    return {flag for key, flag in _CAPABILITY_FLAGS.items() if found.get(key)}


def cpu_has_int8_dot_product() -> bool:
    """Whether the CPU has VNNI (u8 x s8 dot products without the 16-bit saturation of AVX2's ``vpmaddubsw``)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_supports_bf16() -> bool:
    """Whether the CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX-BF16). oneDNN also runs bf16 on plain
    AVX-512 (``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` says yes there), converting to fp32 for the
    arithmetic: not what ``auto`` choices count as native."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def isa_level() -> str:
    """The CPU's tier for engine choices: one of ``ISA_LEVELS``."""
    flags = cpu_flags()
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512_vnni" if cpu_has_int8_dot_product() else "avx512"
    return "avx2" if "avx2" in flags else "other"


_REPORTED = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def instruction_sets() -> list[str]:
    """The vector instruction sets the engines care about that this CPU has (for reports)."""
    flags = cpu_flags()
    return [name for name in _REPORTED if name in flags]


def hidden_instruction_sets() -> list[str]:
    """Instruction sets /proc/cpuinfo lists but CPUID does not report to this process: non-empty under an emulator
    or a CPUID mask (experiments/cpuid_mask), where every runtime runs the kernels of the smaller instruction set."""
    listed = _listed_flags()
    flags = cpu_flags()
    return [name for name in _REPORTED if name in listed and name not in flags]
