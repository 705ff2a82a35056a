#!/usr/bin/env python3
"""Runs the README's training section as written: its shell commands (with build/release/moegrad
replaced by the binary under test) in a scratch folder, then its h5py snippet on the checkpoint
they wrote. The PyTorch snippet that follows needs torch and st-moe-pytorch: it runs only when
MOEGRAD_TORCH_PYTHON names a Python that has them (e.g. build/reference-venv/bin/python).

usage: check_readme_train.py MOEGRAD_BIN README.md WORK_DIR
"""
import os
import re
import shutil
import subprocess
import sys

binary, readme, work = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
text = open(readme).read()
section = text[text.index("## Training: `moegrad train`"):]
section = section[:section.index("\n## ", 1)]
shell = re.findall(r"```sh\n(.*?)```", section, re.S)
python = re.findall(r"```python\n(.*?)```", section, re.S)
assert len(shell) == 1 and len(python) == 2, "the training section has one sh block and two python blocks"

shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
for line in shell[0].splitlines():
    command = line.split("#")[0].strip()
    if not command:
        continue
    assert command.startswith("build/release/moegrad "), command
    argv = [binary] + command.split()[1:]
    print("+", " ".join(argv), flush=True)
    p = subprocess.run(argv, cwd=work, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"README command failed ({p.returncode}): {command}\n{p.stderr}")

os.chdir(work)
scope = {}
exec(compile(python[0], "README h5py snippet", "exec"), scope)
assert scope["step"] == 1000 and len(scope["state"]) > 0

torch_python = os.environ.get("MOEGRAD_TORCH_PYTHON")
if torch_python:
    code = python[0] + python[1] + "\nprint('loaded', sum(p.numel() for p in moe.parameters()), 'parameters')\n"
    p = subprocess.run([torch_python, "-c", code], cwd=work, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"README PyTorch snippet failed:\n{p.stderr}")
    print(p.stdout.strip())
else:
    print("PyTorch snippet not run (set MOEGRAD_TORCH_PYTHON to a Python with torch and st-moe-pytorch)")
print("README training section: ok")
