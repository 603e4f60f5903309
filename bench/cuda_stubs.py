"""Stand-ins for the CUDA libraries of a CUDA torch wheel, so it imports on a machine without them.

PyPI's Linux torch links against cuBLAS, cuDNN, NCCL, ... (the nvidia-* / cuda-toolkit
packages, several GB). To run the GPU image's torch (2.11.0+cu130) on this CPU-only
machine (``bench/gpu_image_env.sh``), each library it needs gets a small stub: the same file
name and symbol versions, every function failing (``cudaGetDeviceCount`` reports 0
devices). Torch then imports, runs on the CPU and sees no CUDA device; a CUDA call raises.
Needs ``nm`` and ``gcc``.

    python bench/cuda_stubs.py /tmp/gpuenv    # writes the stubs into that venv's torch/lib
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

# Functions whose callers read an output argument (the others only check the status).
SPECIAL = {
    "cudaGetDeviceCount": "int cudaGetDeviceCount(int *n) { *n = 0; return 100; }",
    "cudaDriverGetVersion": "int cudaDriverGetVersion(int *v) { *v = 0; return 0; }",
    "cudaRuntimeGetVersion": "int cudaRuntimeGetVersion(int *v) { *v = 0; return 0; }",
}
CUDA_PREFIXES = ("cu", "nccl", "nvshmem", "__cuda", "nvrtc")


def symbols(lib: Path, flag: str) -> list[str]:
    out = subprocess.run(
        ["nm", "-D", flag, "--with-symbol-versions", str(lib)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [line.split()[-1] for line in out.splitlines() if line.split()]


def needed(lib: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True).stdout
    return [line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def stub_source(names: set[str]) -> str:
    lines = ["/* CUDA stand-in: every call fails (no device). */"]
    for name in sorted(names):
        if name in SPECIAL:
            lines.append(SPECIAL[name])
        elif "ErrorString" in name or "ErrorName" in name:
            lines.append(f'const char *{name}(void) {{ return "no CUDA (stub)"; }}')
        else:
            lines.append(f"long {name}(void) {{ return 100; }}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("where", type=Path, help="a venv, or a folder holding torch/ (site-packages)")
    args = p.parse_args(argv)
    libdir = next(args.where.glob("torch/lib"), None) or next(
        args.where.glob("lib/python3*/site-packages/torch/lib")
    )
    libs = sorted(libdir.glob("*.so"))
    present = {f.name for f in libdir.iterdir()}
    system = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    # The libraries torch needs that are neither beside it nor on the system: the CUDA ones.
    missing = {n for lib in libs for n in needed(lib) if n not in present and n not in system}
    if not missing:
        print(f"every library torch needs resolves ({libdir}): no stubs written")
        return 0
    defined = {s.split("@")[0] for lib in libs for s in symbols(lib, "--defined-only")}
    by_lib: dict[str, dict[str | None, set[str]]]
    by_lib = {n: collections.defaultdict(set) for n in missing}
    first = "libcudart.so.13" if "libcudart.so.13" in missing else sorted(missing)[0]
    for lib in libs:
        for sym in symbols(lib, "--undefined-only"):
            name, _, version = sym.partition("@")
            version = version.lstrip("@")
            if name in defined:
                continue
            if version in missing:  # versioned: the node is the library's own name
                by_lib[version][version].add(name)
            elif version.startswith("NVSHMEM") and "libnvshmem_host.so.3" in missing:
                by_lib["libnvshmem_host.so.3"][version].add(name)
            elif not version and name.startswith(CUDA_PREFIXES):  # any loaded object may serve
                by_lib[first][None].add(name)
    with tempfile.TemporaryDirectory() as tmp:
        for soname, nodes in sorted(by_lib.items()):
            src = Path(tmp) / f"{soname}.c"
            src.write_text(stub_source(set().union(*nodes.values()) if nodes else set()))
            cmd = ["gcc", "-shared", "-fPIC", "-w", "-o", str(libdir / soname), str(src),
                   f"-Wl,-soname,{soname}"]  # fmt: skip
            versioned = {v: names for v, names in nodes.items() if v is not None}
            if versioned:
                script = Path(tmp) / f"{soname}.map"
                script.write_text("".join(
                    f"{v} {{ global: {'; '.join(sorted(n))}; }};\n" for v, n in versioned.items()
                ))  # fmt: skip
                cmd.append(f"-Wl,--version-script={script}")
            subprocess.run(cmd, check=True)
            print(f"{soname}: {sum(len(n) for n in nodes.values())} functions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
