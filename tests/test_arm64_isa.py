"""``maskwatch bench`` names an Arm board's int8-deciding instruction sets from its /proc/cpuinfo.

The text is a Raspberry Pi 5's (Cortex-A76), the one .ci/arm64.sh bind-mounts into the emulated
device; a Pi 4's Cortex-A72 has NEON but no dot product.
"""
from __future__ import annotations

from pathlib import Path

from maskwatch.benchmarks.speed.bench import cpu_name, instruction_sets

PI5_CPUINFO = (Path(__file__).resolve().parents[1] / ".ci" / "cortex-a76.cpuinfo").read_text()
PI4_FEATURES = "Features\t: fp asimd evtstrm crc32 cpuid\n"


def test_a_pi5_reports_neon_dot_product():
    assert instruction_sets(PI5_CPUINFO * 4) == ["NEON", "NEON dot product"]


def test_a_pi4_reports_neon_only():
    assert instruction_sets("processor\t: 0\n" + PI4_FEATURES) == ["NEON"]


def test_x86_flags_are_not_read_as_arm_features():
    flags = "flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n"
    assert instruction_sets(flags) == ["AVX2", "FMA", "AVX-512", "AVX-512 VNNI"]


def test_an_arm_cpu_is_named_by_its_core_and_board():
    assert cpu_name(PI5_CPUINFO, board="Raspberry Pi 5 Model B Rev 1.0") == "Cortex-A76 (Raspberry Pi 5 Model B Rev 1.0)"
    assert cpu_name("processor\t: 0\nCPU part\t: 0xd08\n", board="") == "Cortex-A72"
    assert cpu_name("model name\t: Intel(R) Xeon(R) Processor\n") == "Intel(R) Xeon(R) Processor"
