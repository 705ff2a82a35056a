#!/usr/bin/env python3
"""Runs the README's "Resuming in PyTorch" section as written: its shell command (the binary
under test for build/release/moegrad), then its Python snippet, which builds a PyTorch module
with the checkpoint's names, loads /model into it and /optimizer into a torch.optim.AdamW and
takes three steps. The steps are then recomputed with numpy from the checkpoint (AdamW, torch
1.13's rule, each parameter's loaded step and moments): the snippet's parameters must match,
and differ from three steps of a fresh AdamW, so the state really arrived where it belongs.
Exits 77 (CTest: skipped) after the shell command when torch is not installed (Debian:
python3-torch).

usage: check_optimizer_torch.py MOEGRAD_BIN README.md WORK_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np

binary, readme, work = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
text = open(readme).read()
section = text[text.index("## Resuming in PyTorch"):]
section = section[:section.index("\n## ", 1)]
shell = re.findall(r"```sh\n(.*?)```", section, re.S)
python = re.findall(r"```python\n(.*?)```", section, re.S)
assert len(shell) == 1 and len(python) == 1, "the section has one sh block and one python block"

shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
os.chdir(work)
for line in shell[0].splitlines():
    command = line.split("#")[0].strip()
    if not command:
        continue
    assert command.startswith("build/release/moegrad "), command
    p = subprocess.run([binary] + command.split()[1:], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"README command failed ({p.returncode}): {command}\n{p.stderr}")

try:  # the shell command above runs either way
    import torch  # noqa: F401  (the snippet imports it again)
except ImportError:
    print("skipped: torch is not installed (apt-get install python3-torch); the section's command ran")
    sys.exit(77)
scope = {}
exec(compile(python[0], "README PyTorch optimizer snippet", "exec"), scope)
model, adamw, path = scope["model"], scope["adamw"], scope["path"]
steps_taken = 3

with h5py.File(path, "r") as f:
    config = json.loads(f.attrs["config_json"])
    lr, wd = config["lr"], config["weight_decay"]
    opt = f["optimizer"]
    state = {k: {s: opt[k][s][()] for s in opt[k]} for k in opt if isinstance(opt[k], h5py.Group)}
    start = {k: f["model"][k][()].astype(np.float64) for k in state}  # the parameters (no buffers)


def adamw_steps(p, m, v, step):
    """torch 1.13's single-tensor AdamW on the stand-in loss sum(p^2) (gradient 2p), in float64."""
    for _ in range(steps_taken):
        g = 2 * p
        p = p * (1 - lr * wd)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        step += 1
        denom = np.sqrt(v) / np.sqrt(1 - 0.999 ** step) + 1e-8
        p = p - lr / (1 - 0.9 ** step) * m / denom
    return p


after = {name: t.detach().numpy().astype(np.float64) for name, t in model.named_parameters()}
assert sorted(after) == sorted(start), "the PyTorch module's parameters are the keys with optimizer state"
worst, fresh_gap = 0.0, 0.0
for key, p0 in start.items():
    s = state[key]
    want = adamw_steps(p0, s["exp_avg"].astype(np.float64), s["exp_avg_sq"].astype(np.float64), float(s["step"]))
    fresh = adamw_steps(p0, np.zeros_like(p0), np.zeros_like(p0), 0.0)
    scale = max(float(np.max(np.abs(want - p0))), 1e-12)  # the size of the update
    worst = max(worst, float(np.max(np.abs(after[key] - want))) / scale)
    fresh_gap = max(fresh_gap, float(np.max(np.abs(fresh - want))) / scale)
    assert int(adamw.state[model.get_parameter(key)]["step"]) == int(s["step"]) + steps_taken, key
print(f"{len(start)} parameters: max |torch - expected| = {worst:.2e} of the update; a fresh AdamW is "
      f"{fresh_gap:.2e} away")
assert worst < 1e-3, f"the resumed PyTorch AdamW does not continue the checkpoint's state ({worst:.3g})"
assert fresh_gap > 1e-2, "the check cannot tell the loaded state from a fresh one"
print("README PyTorch optimizer snippet: ok")
