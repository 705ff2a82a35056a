#!/usr/bin/env python3
"""Runs the README's "Training on your own data" section as written: its first python block
(writes train.h5, eval.h5, tokens.h5), each `build/release/moegrad ...` line of its sh block
(with build/release/moegrad replaced by the binary under test), then its read-back python block,
and checks what that block computes: predict's shapes and eval's loss against the numpy MSE.

usage: check_readme_tensors.py MOEGRAD_BIN README.md WORK_DIR
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

binary, readme, work = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
text = open(readme).read()
start = text.index("## Training on your own data\n")
section = text[start:text.index("\n## ", start + 1)]
shell = re.findall(r"```sh\n(.*?)```", section, re.S)
python = re.findall(r"```python\n(.*?)```", section, re.S)
assert len(shell) == 1 and len(python) == 2, "the section has one sh block and two python blocks"

shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
os.chdir(work)
exec(compile(python[0], "README data snippet", "exec"), {})
for line in shell[0].splitlines():
    command = line.split("#")[0].strip()
    if not command:
        continue
    assert command.startswith("build/release/moegrad "), command
    argv = [binary] + shlex.split(command)[1:]
    print("+", " ".join(argv), flush=True)
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"README command failed ({p.returncode}): {command}\n{p.stderr}")
scope = {}
exec(compile(python[1], "README read-back snippet", "exec"), scope)
loss = json.load(open("runs/eval.json"))["loss"]
assert scope["y_pred"].shape == (400, 2), scope["y_pred"].shape
assert scope["experts"].shape == (400, 2) and scope["weights"].shape == (400, 2)
assert abs(scope["mse"] - loss) <= 1e-5 * loss, (scope["mse"], loss)
assert os.path.exists("runs/tokens/step-000000100.h5")
print("README 'Training on your own data' section: ok")
