#!/usr/bin/env python3
"""Runs the README's `mpirun` section as written (build/release/... replaced by the binaries
under test), in a scratch folder: every command must succeed, the second and third must resume
the first's checkpoint, and the example must report identical replicated parameters.

usage: check_readme_dist.py BUILD_DIR README.md WORK_DIR
Exit 77 (skipped) when mpirun is not installed or moegrad was built without MPI.
"""
import os
import re
import shutil
import subprocess
import sys

build, readme, work = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
if not shutil.which("mpirun"):
    print("skipped: mpirun is not installed")
    sys.exit(77)
info = subprocess.run([os.path.join(build, "moegrad"), "info"], capture_output=True, text=True).stdout
if "MPI yes" not in info:
    print("skipped: this moegrad was built without MPI")
    sys.exit(77)
text = open(readme).read()
section = text[text.index("## Many processes: `mpirun`"):]
section = section[:section.index("\n## ", 1)]
blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
assert len(blocks) == 1, "the mpirun section has one sh block"
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
           OMPI_MCA_btl="self,vader", OMPI_MCA_rmaps_base_oversubscribe="1",
           # Open MPI's own allocations are not ours to report (sanitizer builds).
           ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
outputs = []
for line in blocks[0].splitlines():
    command = line.split("#")[0].strip()
    if not command:
        continue
    argv = command.replace("build/release/moegrad", os.path.join(build, "moegrad"))
    argv = argv.replace("build/release/examples/", os.path.join(build, "examples") + "/").split()
    p = subprocess.run(argv, cwd=work, capture_output=True, text=True, env=env, timeout=600)
    out = p.stdout + p.stderr
    print(f"$ {command}\n{out[-1500:]}")
    if p.returncode != 0:
        sys.exit(f"FAIL: '{command}' exited {p.returncode}")
    outputs.append(out)
assert len(outputs) == 4, f"expected 4 commands, ran {len(outputs)}"
assert "resumed from" in outputs[1] and "step-000000040.h5" in outputs[1], "the 2-rank run did not resume step 40"
assert "resumed from" in outputs[2] and "step-000000060.h5" in outputs[2], "the 1-process run did not resume step 60"
assert "replicated parameters identical on all 2 rank(s)" in outputs[3], "the example did not check its ranks"
print("the README's mpirun section runs as written")
