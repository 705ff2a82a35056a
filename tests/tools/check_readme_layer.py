#!/usr/bin/env python3
"""Runs the README's `moegrad layer` section: its moe.json, its exact command line and its
h5py read-back snippet.

Usage:  check_readme_layer.py MOEGRAD_BIN README.md WORK_DIR

The section's PyTorch export snippet needs torch and st-moe-pytorch, which CI lacks. Unless
MOEGRAD_TORCH_PYTHON names a Python that has both (e.g. build/reference-venv/bin/python), this
script writes the same files with h5py and numpy instead: weights.h5 in st-moe-pytorch's
state_dict layout for the spec's arguments, and input.h5 with x and the two draws. Without
PyTorch there is nothing to compare with, so the stand-in's torch_out.h5 is moegrad's own
result; the comparison with PyTorch is what tests/reference and check_layer_cli.py do.
Each `build/release/moegrad ...` line of the sh block is run through the shell exactly as
written, with build/release/moegrad replaced by MOEGRAD_BIN. Exits non-zero on any problem.
"""

import json
import os
import re
import shlex
import subprocess
import sys

import h5py
import numpy as np

HEADING = "## moegrad layer: run a module on your tensors"
README_BINARY = "build/release/moegrad"


def section_blocks(readme):
    text = open(readme).read()
    start = text.find(HEADING + "\n")
    if start < 0:
        sys.exit(f"{readme}: no section '{HEADING}'")
    end = text.find("\n## ", start + len(HEADING))
    blocks = re.findall(r"```(\w+)\n(.*?)```", text[start:end if end > 0 else len(text)], re.S)
    by_lang = {}
    for lang, body in blocks:
        by_lang.setdefault(lang, []).append(body)
    return by_lang


def stand_in_files(spec, work):
    """weights.h5 and input.h5 as the README's PyTorch snippet writes them, without PyTorch."""
    if spec["module"] != "st_moe.MoE":
        sys.exit(f"the stand-in knows st_moe.MoE's state_dict only, the README uses {spec['module']}")
    args = spec["args"]
    dim, e, k = args["dim"], args.get("num_experts", 16), args.get("gating_top_n", 2)
    hidden = int(dim * args.get("expert_hidden_mult", 4) * 2 / 3)  # st-moe-pytorch's Expert (GEGLU)
    rng = np.random.default_rng(0)

    def uniform(shape, bound):
        return rng.uniform(-bound, bound, shape).astype(np.float32)

    with h5py.File(os.path.join(work, "weights.h5"), "w") as f:
        for i in range(e):
            p = f"model/experts.experts.{i}.net."
            f[p + "0.weight"] = uniform((2 * hidden, dim), dim ** -0.5)
            f[p + "0.bias"] = uniform((2 * hidden,), dim ** -0.5)
            f[p + "1.mult_bias"] = np.ones(hidden, np.float32)
            f[p + "2.weight"] = uniform((dim, hidden), hidden ** -0.5)
            f[p + "2.bias"] = uniform((dim,), hidden ** -0.5)
        f["model/gate.to_gates.weight"] = uniform((e, dim), dim ** -0.5)
        thresholds = np.array([1e-9] + [0.2] * (k - 1), np.float32)  # [eps, *threshold_train]
        f["model/gate.threshold_train"] = thresholds
        f["model/gate.threshold_eval"] = thresholds
    b, n = 2, 10
    with h5py.File(os.path.join(work, "input.h5"), "w") as f:
        f["x"] = rng.standard_normal((b, n, dim)).astype(np.float32)
        if spec.get("forward", {}).get("noise_gates"):
            f["noise_uniform"] = rng.uniform(0, 1, (b, n, e)).astype(np.float32)
        f["route_uniform"] = rng.uniform(0, 1, (k, b, n)).astype(np.float32)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    moegrad, readme, work = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)
    blocks = section_blocks(readme)
    problems = []

    # moe.json, verbatim.
    (spec_text,) = blocks.get("json", [None])
    spec = json.loads(spec_text)
    with open(os.path.join(work, "moe.json"), "w") as f:
        f.write(spec_text)

    # The export: the PyTorch snippet when a Python with torch is named, else the stand-in.
    python_blocks = blocks.get("python", [])
    export = [b for b in python_blocks if "import torch" in b]
    readback = [b for b in python_blocks if "import torch" not in b]
    if len(export) != 1 or not readback:
        sys.exit(f"expected one PyTorch export snippet and a read-back snippet, got {len(export)} and {len(readback)}")
    torch_python = os.environ.get("MOEGRAD_TORCH_PYTHON")
    if torch_python:
        print(f"export: the README's PyTorch snippet, with {torch_python}")
        subprocess.run([torch_python, "-c", export[0]], cwd=work, check=True)
    else:
        print("export: h5py stand-in (set MOEGRAD_TORCH_PYTHON to run the PyTorch snippet)")
        stand_in_files(spec, work)

    # The command lines, as written.
    commands = [l for b in blocks.get("sh", []) for l in b.splitlines() if l.startswith(README_BINARY + " ")]
    if not commands:
        sys.exit(f"no '{README_BINARY} ...' line in the section's sh blocks")
    for line in commands:
        cmd = shlex.quote(moegrad) + line[len(README_BINARY):]
        p = subprocess.run(cmd, shell=True, cwd=work, capture_output=True, text=True)
        print(f"$ {line}\n{p.stderr.strip()}")
        if p.returncode != 0:
            problems.append(f"exit {p.returncode}: {line}")

    # out.h5 holds what the section says.
    if not problems:
        with h5py.File(os.path.join(work, "out.h5"), "r") as out, h5py.File(os.path.join(work, "weights.h5"), "r") as w:
            keys = []
            w["model"].visititems(lambda k, v: keys.append(k) if isinstance(v, h5py.Dataset) else None)
            params = [k for k in keys if "threshold" not in k]  # buffers have no gradient
            want = ["output", "aux_loss", "balance_loss", "router_z_loss", "grad/x"] + ["grad/" + k for k in params]
            problems += [f"out.h5 has no {name}" for name in want if name not in out]
            for attr in ("producer", "moegrad_version", "module", "mode", "device", "dtype", "spec_json",
                         "inputs_json", "seed", "backward", "loss_value"):
                if attr not in out.attrs:
                    problems.append(f"out.h5 has no attribute {attr}")
            if not torch_python:  # the stand-in's "PyTorch" result (see the docstring)
                with h5py.File(os.path.join(work, "torch_out.h5"), "w") as t:
                    t["output"], t["grad/x"] = out["output"][()], out["grad/x"][()]

    # The read-back snippets.
    for i, snippet in enumerate(readback):
        if problems:
            break
        p = subprocess.run([sys.executable, "-c", snippet], cwd=work, capture_output=True, text=True)
        print(f"read-back snippet {i}: exit {p.returncode}\n{(p.stdout + p.stderr).strip()}")
        if p.returncode != 0:
            problems.append(f"read-back snippet {i} failed")

    for p in problems:
        print("FAIL " + p)
    print("all passed" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
