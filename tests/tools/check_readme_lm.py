#!/usr/bin/env python3
"""Runs the README's "A small MoE language model" section: each line of its sh blocks, in order, in a
scratch folder (build/release/moegrad replaced by the binary under test; the `cat` and `tail` lines
through bash), shortened so that it runs in seconds: --steps 14000 becomes --steps 20 (and the
checkpoint name step-000014000 step-000000020), --warmup 100 becomes 2, --eval-every 2000 becomes
10, --eval-batches 64 becomes 4, and the held-out file that eval --text reads is cut to its last
HELD_OUT bytes once the `tail` line is checked to cut the 10% the runs hold out (a sanitizer build
takes minutes over the whole 257 KB). The corpus is Debian's fortunes package
(scripts/lib/common.sh installs it). Checks that each command succeeds, that the runs report bits
per byte, that generate prints the prompt and 200 bytes, that the `tail` line cuts the 10% the runs
hold out, and that eval --text predicts each of its bytes but the first once and writes bits per
byte = loss / ln 2.

usage: check_readme_lm.py MOEGRAD_BIN README.md WORK_DIR
"""
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys

binary, readme, work = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
text = open(readme).read()
start = text.index("## A small MoE language model\n")
section = text[start:text.index("\n## ", start + 1)]
shell = re.findall(r"```sh\n(.*?)```", section, re.S)
assert len(shell) == 2, "the section has two sh blocks (training and generation; eval)"
if not os.path.isdir("/usr/share/games/fortunes"):
    sys.exit("the corpus is missing: install Debian's fortunes package (scripts/lib/common.sh lists it)")

shutil.rmtree(work, ignore_errors=True)
os.makedirs(os.path.join(work, "build"))
os.chdir(work)
SHORTER = [("--steps 14000", "--steps 20"), ("step-000014000", "step-000000020"), ("--warmup 100", "--warmup 2"),
           ("--eval-every 2000", "--eval-every 10"), ("--eval-batches 64", "--eval-batches 4")]
HELD_OUT = 20001
# Every shortening must apply, or a README edit would run the full-length training here.
missing = [a for a, _ in SHORTER if a not in section]
assert not missing, f"the README's commands no longer contain {missing}: update SHORTER"
outputs = []
for line in "\n".join(shell).splitlines():
    command = line.split(" #")[0].strip()
    if not command:
        continue
    for a, b in SHORTER:
        command = command.replace(a, b)
    if command.startswith("tail "):  # the README's count is the held-out 10%; the test evaluates less
        corpus = os.path.getsize("build/fortunes.txt")
        assert f"tail -c {corpus // 10} " in command, f"{command}: the held-out 10% of {corpus} bytes"
        command = command.replace(f"tail -c {corpus // 10} ", f"tail -c {HELD_OUT} ")
    if command.startswith(("cat ", "tail ")):
        argv = ["bash", "-c", command]
    else:
        assert command.startswith("build/release/moegrad "), command
        argv = [binary] + shlex.split(command)[1:]
    print("+", " ".join(argv), flush=True)
    p = subprocess.run(argv, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"README command failed ({p.returncode}): {command}\n{p.stderr.decode(errors='replace')}")
    outputs.append((command, p))
trains = [p for c, p in outputs if " train " in c]
assert len(trains) == 2 and all(b"bits per byte" in p.stderr for p in trains), "two runs, each reporting bits per byte"
assert b"the st_moe model of these options" in trains[1].stderr, "the second run is the dense baseline"
gen = [p for c, p in outputs if " generate " in c]
assert len(gen) == 1 and gen[0].stdout.startswith(b"The ") and len(gen[0].stdout) == len("The ") + 200 + 1
tail = [c for c, p in outputs if c.startswith("tail ")]
assert len(tail) == 1, tail
ev = [(c, p) for c, p in outputs if " eval " in c]
assert len(ev) == 1 and b"bits per byte" in ev[0][1].stdout, ev
r = json.load(open(re.search(r"--output (\S+)", ev[0][0]).group(1)))
assert r["predicted_bytes"] == HELD_OUT - 1 and abs(r["bits_per_byte"] - r["loss"] / math.log(2)) < 1e-12, r
print(f"eval --text: {r['bits_per_byte']:.4f} bits per byte over {r['predicted_bytes']} bytes (20 steps; the "
      f"held-out file cut to its last {HELD_OUT} bytes)")
print("README 'A small MoE language model' section: ok")
