#!/usr/bin/env python3
"""Checks the floors inside core/ (docs/design.md, "core"): every #include "core/..." runs down or
sideways, never up, and the ops reach the backends only through the kernel families.

Floors, lowest first:
  base     core/*.{h,cpp} (Tensor, Storage, DType, Device, errors, sizes, the device runtime
           table, the backend dispatcher) -- except the api files below
  kernels  core/kernels/   device-neutral math, plans and the kernel family declarations
  backend  core/cpu/, core/cuda/   (neither includes the other)
  ops      core/ops/
  api      core/rng.*, core/ops.h, core/build_info.*   (entry points over everything)

Also: core/ops/ and core/rng.cpp name no backend namespace (cpu::, cuda::) and never branch on
is_cuda(): they call backend<Family>(op, device) (core/backend.h). core/ops/map.h, the one
dispatcher of the elementwise templates, is the listed exception.

usage: check_core_floors.py SOURCE_ROOT   (runs its own self-test first)
"""
import pathlib
import re
import sys
import tempfile

FLOORS = ["base", "kernels", "backend", "ops", "api"]
API_STEMS = {"rng", "ops", "build_info"}
SUBDIR_FLOOR = {"kernels": "kernels", "cpu": "backend", "cuda": "backend", "ops": "ops"}
BACKEND_CALL_ALLOWED = {"core/ops/map.h"}
OPS_LIKE = {"core/rng.cpp"}  # op entry points outside core/ops/
SOURCE_SUFFIXES = {".h", ".cpp", ".cu", ".cuh", ".inc"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"(core/[^"]+)"', re.M)
BACKEND_CALL = re.compile(r"\b(?:cpu|cuda)::|\.is_cuda\(\)")


def floor_of(rel):
    """The floor of a path "core/..." or None for a folder with no floor (an error)."""
    parts = rel.split("/")
    if len(parts) == 2:
        return "api" if parts[1].split(".")[0] in API_STEMS else "base"
    return SUBDIR_FLOOR.get(parts[1])


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def check(root):
    """Returns a list of one-line problems for the tree under root."""
    root = pathlib.Path(root)
    problems = []
    files = sorted(p for p in (root / "core").rglob("*") if p.is_file() and p.suffix in SOURCE_SUFFIXES)
    if not files:
        return [f"no sources under {root / 'core'}"]
    for path in files:
        rel = path.relative_to(root).as_posix()
        mine = floor_of(rel)
        if mine is None:
            problems.append(f"{rel}: folder core/{rel.split('/')[1]}/ has no floor (add it to check_core_floors.py)")
            continue
        text = path.read_text()
        for target in INCLUDE.findall(text):
            theirs = floor_of(target)
            if theirs is None:
                problems.append(f"{rel}: includes {target}, in a folder with no floor")
            elif FLOORS.index(theirs) > FLOORS.index(mine):
                problems.append(f"{rel} ({mine}) includes {target} ({theirs}): an arrow back up")
            elif mine == theirs == "backend" and target.split("/")[1] != rel.split("/")[1]:
                problems.append(f"{rel} includes {target}: one backend includes the other")
        if (rel.startswith("core/ops/") or rel in OPS_LIKE) and rel not in BACKEND_CALL_ALLOWED:
            for m in BACKEND_CALL.finditer(strip_comments(text)):
                problems.append(f"{rel}: '{m.group(0)}' -- ops reach kernels through backend<Family>(op, device)")
    return problems


def self_test():
    """The checker finds each kind of violation in a small synthetic tree, and passes a clean one."""
    cases = {
        "core/cpu/a.cpp": ('#include "core/ops/creation.h"\n', "arrow back up"),
        "core/kernels/b.h": ('#include "core/cpu/loops.h"\n', "arrow back up"),
        "core/tensor.cpp": ('#include "core/kernels/gemm.h"\n', "arrow back up"),
        "core/cuda/c.cu": ('#include "core/cpu/blas_gemm.h"\n', "one backend includes the other"),
        "core/ops/d.cpp": ("void f(const Tensor& x) { if (x.device().is_cuda()) cuda::g(x); }\n", "backend<Family>"),
        "core/extra/e.h": ("\n", "has no floor"),
    }
    for rel, (text, expect) in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / rel
            path.parent.mkdir(parents=True)
            path.write_text(text)
            found = check(tmp)
            assert any(expect in p for p in found), f"self-test: {rel} not flagged ({found})"
    with tempfile.TemporaryDirectory() as tmp:
        clean = {
            "core/tensor.h": '#include "core/device.h"\n',
            "core/kernels/k.h": '#include "core/tensor.h"\n',
            "core/cpu/k.cpp": '#include "core/kernels/k.h"\n',
            "core/ops/o.cpp": '#include "core/backend.h"\n// cuda:: in a comment is fine\n',
            "core/rng.cpp": '#include "core/ops/o.h"\n',
        }
        for rel, text in clean.items():
            path = pathlib.Path(tmp) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        found = check(tmp)
        assert not found, f"self-test: a clean tree was flagged: {found}"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    self_test()
    problems = check(sys.argv[1])
    for p in problems:
        print(p)
    if problems:
        sys.exit(f"{len(problems)} include(s) or call(s) break the floors of core/")
    print("core/ floors: every include runs down or sideways; ops reach kernels through backend<Family>")


if __name__ == "__main__":
    main()
