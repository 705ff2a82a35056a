#!/usr/bin/env python3
"""`cmake --install` and the README's "Using moegrad from your own CMake project" section as
written: installs BUILD_DIR under $HOME/opt/moegrad with HOME a scratch folder (its first sh
block, build/release replaced by BUILD_DIR), builds the section's CMakeLists.txt with a copy of
examples/lucidrains_moe_regression.cpp as an outside project and runs it (second sh block), and
compiles and runs its hello.cpp (the ```c++ block: a whole program, so not one of the ```cpp
snippets tests/extract_readme_snippets.py wraps in main()) with pkg-config (third sh block). Then checks the installed
layout: the RUNPATHs, no private header installed, and one file including every installed header
compiles with pkg-config's flags alone.

usage: check_install.py BUILD_DIR SOURCE_DIR WORK_DIR
In the sanitizer build the installed targets and moegrad.pc carry -fsanitize=address,undefined,
so the outside programs link the ASan/UBSan runtime the libraries need, and run under it.
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys

build, source, work = (pathlib.Path(a).resolve() for a in sys.argv[1:4])

text = (source / "README.md").read_text()
section = text[text.index("## Using moegrad from your own CMake project"):]
section = section[:section.index("\n## ", 1)]
shell = re.findall(r"```sh\n(.*?)```", section, re.S)
cmake_lists = re.findall(r"```cmake\n(.*?)```", section, re.S)
hello = re.findall(r"```c\+\+\n(.*?)```", section, re.S)
assert len(shell) == 3 and len(cmake_lists) == 1 and len(hello) == 1, \
    "the install section has three sh blocks, one cmake block and one c++ block"

shutil.rmtree(work, ignore_errors=True)
home = work / "home"
app = work / "app"
hello_dir = work / "hello"
for d in (home, app, hello_dir):
    d.mkdir(parents=True)
env = dict(os.environ, HOME=str(home))
env.pop("PKG_CONFIG_PATH", None)
env.pop("CMAKE_PREFIX_PATH", None)
env.pop("LD_LIBRARY_PATH", None)


def run_block(block, cwd):
    """Runs one README sh block in bash (-e: the first failing command fails the test)."""
    script = block.replace("build/release", str(build))
    print(f"+ (in {cwd})\n{script}", flush=True)
    p = subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True)
    print(p.stdout[-3000:], flush=True)
    if p.returncode != 0:
        sys.exit(f"README block failed (exit {p.returncode}):\n{script}\n{p.stderr[-6000:]}")
    return p.stdout


def fail(message):
    sys.exit(f"check_install: {message}")


# 1. Install, and the installed program runs.
out = run_block(shell[0], work)
# The installed program loads the same libraries (OpenBLAS's OpenMP build through RUNPATH, say)
# as the build tree's, so it reports the same configuration.
expected = subprocess.run([str(build / "moegrad"), "info"], capture_output=True, text=True, check=True).stdout
if expected not in out:
    fail(f"the installed `moegrad info` differs from the build tree's:\n{out}\nexpected:\n{expected}")
prefix = home / "opt" / "moegrad"

# 2. An outside CMake project: the README's CMakeLists.txt and a copy of the example.
(app / "CMakeLists.txt").write_text(cmake_lists[0])
shutil.copy(source / "examples" / "lucidrains_moe_regression.cpp", app)
run_block(shell[1], app)

# 3. pkg-config: the README's hello.cpp.
(hello_dir / "hello.cpp").write_text(hello[0])
out = run_block(shell[2], hello_dir)
if "max error 0" not in out:
    fail(f"hello.cpp printed an unexpected result:\n{out}")

# 4. The layout: libraries, program, package files; the RUNPATHs lead to the installed libraries.
libdir = prefix / "lib"
for rel in ["bin/moegrad", "include/moegrad/core/tensor.h", "include/moegrad/layers/layers.h",
            "include/moegrad/tools/cli.h", "lib/cmake/moegrad/moegradConfig.cmake",
            "lib/cmake/moegrad/moegradConfigVersion.cmake", "lib/cmake/moegrad/moegradTargets.cmake",
            "lib/pkgconfig/moegrad.pc"] + \
           [f"lib/libmoegrad_{f}.so" for f in ("core", "autograd", "dist", "layers", "optim", "train")]:
    if not (prefix / rel).exists():
        fail(f"{rel} was not installed")
for binary in [prefix / "bin/moegrad", libdir / "libmoegrad_train.so"]:
    dyn = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
    if "$ORIGIN/../lib" not in dyn:
        fail(f"{binary.name}'s RUNPATH lacks $ORIGIN/../lib:\n{dyn}")
    if str(build) in dyn:
        fail(f"{binary.name}'s RUNPATH still names the build tree {build}")
ldd = subprocess.run(["ldd", str(prefix / "bin/moegrad")], capture_output=True, text=True, check=True).stdout
for line in ldd.splitlines():
    if "libmoegrad_" in line and (str(libdir) + "/") not in line.replace("/bin/../lib/", "/lib/"):
        fail(f"the installed moegrad loads a library from elsewhere: {line.strip()}")

# 5. No header that includes a private dependency (MPI, NCCL, HDF5, CBLAS, oneDNN, CUDA runtime) was
# installed, and every installed header compiles with pkg-config's flags alone.
include = prefix / "include" / "moegrad"
headers = sorted(str(h.relative_to(include)) for h in include.rglob("*.h"))
for h in headers:
    body = (include / h).read_text()
    private = re.search(r"#include <(mpi\.h|nccl\.h|hdf5\.h|hdf5_hl\.h|cblas\.h|(?:oneapi/dnnl/)?dnnl\.h|cuda_runtime[^>]*)>", body)
    if private:
        fail(f"installed header {h} includes the private <{private.group(1)}>")
(hello_dir / "all_headers.cpp").write_text("".join(f'#include "{h}"\n' for h in headers) + "int main() {}\n")
cflags = subprocess.run(["pkg-config", "--cflags", "moegrad"], capture_output=True, text=True, check=True,
                        env=dict(env, PKG_CONFIG_PATH=str(libdir / "pkgconfig"))).stdout.split()
p = subprocess.run(["g++", "-fsyntax-only", *cflags, "all_headers.cpp"], cwd=hello_dir, capture_output=True, text=True)
if p.returncode != 0:
    fail(f"the {len(headers)} installed headers do not compile together:\n{p.stderr[-6000:]}")
print(f"install: {len(headers)} headers, outside CMake project, pkg-config program and moegrad info: ok")
