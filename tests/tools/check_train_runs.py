#!/usr/bin/env python3
"""End-to-end checks of runs that share or reuse files (`moegrad train`): one run per
checkpoint folder and per metrics file (a second run fails at once naming the PID; SIGKILL
releases the lock), refusing to destroy earlier checkpoints or metrics unless --overwrite,
re-running a finished command, --skip-nonfinite runs that train nothing, the dense baseline's
active parameters and the capacity-factor note.

usage: check_train_runs.py MOEGRAD_BIN WORK_DIR
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

BIN, WORK = sys.argv[1], sys.argv[2]
SMALL = ["--dim", "8", "--hidden", "8", "--experts", "4", "--input-dim", "6", "--clusters", "3",
         "--batch-size", "4", "--seq-len", "6", "--steps", "8", "--warmup", "2", "--eval-every", "4",
         "--eval-batches", "1", "--log-every", "1", "--ckpt-every", "2", "--keep-last", "0",
         "--seed", "3", "--no-progress"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(args, expect=0):
    p = subprocess.run([BIN, "train"] + args, capture_output=True, text=True)
    if expect is not None and p.returncode != expect:
        failures.append(f"train {' '.join(args)}: exit {p.returncode}, expected {expect}\n{p.stderr}")
        print("FAIL:", failures[-1])
    return p


def fresh(name):
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def digest(folder):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as fh:
                h.update(name.encode() + fh.read())
    return h.hexdigest()


def one_line(p):
    lines = p.stderr.strip().splitlines()
    return lines[0] if len(lines) == 1 else f"<{len(lines)} lines: {p.stderr!r}>"


def start_long_run(args, log):
    """Starts a run that lasts until killed; returns once it is training (it holds its locks)."""
    out = open(log, "w")
    p = subprocess.Popen([BIN, "train"] + args, stdout=out, stderr=out)
    for _ in range(600):
        if "\nconfig: {" in "\n" + open(log).read() or p.poll() is not None:
            break
        time.sleep(0.1)
    check(p.poll() is None, f"the long run is running: {open(log).read()[-500:]!r}")
    return p


LONG = ["--steps", "1000000", "--warmup", "0", "--ckpt-every", "1000000", "--log-every", "1000000",
        "--eval-every", "0", "--no-progress", "--dim", "8", "--hidden", "8", "--experts", "4"]

# 1. One run per checkpoint folder: the second fails at once naming the holder; SIGKILL of the
# holder releases the lock and a third run takes the folder.
d = fresh("lock")
first = start_long_run(LONG + ["--ckpt-dir", f"{d}/ckpt"], f"{d}/first.log")
p = run(["--steps", "2", "--warmup", "0", "--ckpt-dir", f"{d}/ckpt", "--no-progress"], expect=1)
line = one_line(p)
check(line == f"moegrad train: [train] the checkpoint folder '{d}/ckpt' is in use by another run "
      f"(process {first.pid}): one run per folder", f"second run on one folder: {line}")
check(os.listdir(f"{d}/ckpt") == [], f"no lock file or checkpoint left in the folder: {os.listdir(f'{d}/ckpt')}")
# The metrics file too: a run with another folder but the same metrics file.
second = start_long_run(LONG + ["--ckpt-dir", f"{d}/other", "--metrics", f"{d}/m.jsonl"], f"{d}/second.log")
p = run(["--steps", "2", "--warmup", "0", "--metrics", f"{d}/m.jsonl", "--no-progress"], expect=1)
check(f"the metrics file '{d}/m.jsonl' is in use by another run (process {second.pid})" in one_line(p),
      f"second run on one metrics file: {one_line(p)}")
for proc in (first, second):
    proc.send_signal(signal.SIGKILL)
    proc.wait()
p = run(["--steps", "2", "--warmup", "0", "--ckpt-dir", f"{d}/ckpt", "--no-progress"])
check(os.listdir(f"{d}/ckpt") == ["step-000000002.h5"], "after SIGKILL of the holder a new run takes the folder")
run(["--steps", "2", "--warmup", "0", "--metrics", f"{d}/m.jsonl", "--overwrite", "--no-progress"])

# 2. --resume none into a folder with checkpoints: refused, nothing changes; --overwrite removes them.
d = fresh("overwrite")
done = run(SMALL + ["--ckpt-dir", f"{d}/ckpt", "--metrics", f"{d}/m.jsonl"])
state = digest(d)
p = run(SMALL + ["--ckpt-dir", f"{d}/ckpt", "--metrics", f"{d}/m.jsonl", "--resume", "none"], expect=1)
check(one_line(p) == f"moegrad train: [train] --resume none but '{d}/ckpt' already holds 4 checkpoints (steps 2 to 8): "
      "pass --overwrite to remove them and start afresh, or --resume auto to continue", f"refusal: {one_line(p)}")
check(digest(d) == state, "a refused run changes no file")
# A fresh run (another folder) into the existing metrics file: refused too.
p = run(SMALL + ["--ckpt-dir", f"{d}/ckpt2", "--metrics", f"{d}/m.jsonl"], expect=1)
check("--metrics" in one_line(p) and "pass --overwrite to replace it (a resumed run appends)" in one_line(p),
      f"fresh run, existing metrics: {one_line(p)}")
check(digest(f"{d}/ckpt") == digest(f"{d}/ckpt") and open(f"{d}/m.jsonl").read().count("\n") == 8, "metrics kept")
p = run(SMALL + ["--ckpt-dir", f"{d}/ckpt", "--metrics", f"{d}/m.jsonl", "--resume", "none", "--overwrite",
                 "--stop-at", "2"])
check("--overwrite: removed 4 checkpoint(s)" in p.stderr, "--overwrite says what it removed")
check(sorted(os.listdir(f"{d}/ckpt")) == ["step-000000002.h5"], f"old checkpoints gone: {os.listdir(f'{d}/ckpt')}")
check([json.loads(l)["step"] for l in open(f"{d}/m.jsonl")] == [1, 2], "--overwrite replaced the metrics file")

# 3. A resumed run appends to the metrics without duplicate steps.
p = run(SMALL + ["--ckpt-dir", f"{d}/ckpt", "--metrics", f"{d}/m.jsonl"])
check([json.loads(l)["step"] for l in open(f"{d}/m.jsonl")] == list(range(1, 9)), "resumed metrics: steps 1..8 once")

# 4. Re-running a finished command: no zeros, the stored losses, exit 0.
first_summary = next(l for l in p.stderr.splitlines() if l.startswith("done: "))
losses = re.search(r"last loss ([0-9.]+), eval loss ([0-9.]+)", first_summary)
p = run(SMALL + ["--ckpt-dir", f"{d}/ckpt", "--metrics", f"{d}/m.jsonl"])
check(f"nothing to do: the run is already at its last step (step 8 of 8); stored: last loss {losses[1]}, "
      f"eval loss {losses[2]}" in p.stderr, f"re-run of a finished command: {p.stderr[-400:]!r}")
check("0.00000" not in p.stderr, "no zeros printed as a result")
check([json.loads(l)["step"] for l in open(f"{d}/m.jsonl")] == list(range(1, 9)), "the re-run wrote no metrics")

# 5. --skip-nonfinite: a huge SGD step on a huge router z-loss (both at the top of their ranges)
# makes every later step non-finite. Skipped steps log their
# real step and lr; a run in which every step was skipped fails with one line.
d = fresh("skip")
NO_WARMUP = [a for i, a in enumerate(SMALL) if a != "--warmup" and (i == 0 or SMALL[i - 1] != "--warmup")]
blow_up = NO_WARMUP + ["--ckpt-dir", f"{d}/ckpt", "--metrics", f"{d}/m.jsonl", "--optimizer", "sgd", "--momentum", "0",
                   "--lr", "1e6", "--router-z-loss-coef", "1e6", "--clip", "0", "--warmup", "0", "--skip-nonfinite"]
p = run(blow_up + ["--stop-at", "1"])
check("step 1/8  loss" in p.stderr, "step 1 trains")
p = run(blow_up, expect=1)
check(re.search(r"^step 2/8  skipped \(loss or gradients NaN/Inf\)  lr 9\.\d\de\+05", p.stderr, re.M), f"skipped step line: {p.stderr[-600:]!r}")
check(p.stderr.strip().splitlines()[-1] == "moegrad train: [train] every step of this run (7 of 7, steps 2 to 8) was "
      "skipped as non-finite (--skip-nonfinite): nothing was trained", f"all skipped: {p.stderr[-300:]!r}")
records = [json.loads(l) for l in open(f"{d}/m.jsonl")]
check([r["step"] for r in records] == list(range(1, 9)), "every step logged")
check(all("skipped_nonfinite" in r and r["lr"] > 1e4 for r in records[1:]), "skipped records name the step and lr")
d = fresh("skip-some")
p = run(NO_WARMUP + ["--optimizer", "sgd", "--momentum", "0", "--lr", "1e6", "--router-z-loss-coef", "1e6",
                     "--clip", "0", "--warmup", "0", "--skip-nonfinite"])
check(", 7 step(s) skipped as non-finite" in p.stderr, f"skipped steps counted: {p.stderr[-300:]!r}")

# 6. The dense baseline: its active parameters per token against the st_moe model's.
moe = run(["--steps", "1", "--warmup", "0", "--no-progress"]).stderr
dense = run(["--model", "dense", "--steps", "1", "--warmup", "0", "--no-progress"]).stderr
moe_active = int(re.search(r"model: \d+ parameters, (\d+) active per token", moe)[1])
m = re.search(r"model: (\d+) parameters, (\d+) active per token \(the st_moe model of these options: (\d+), "
              r"difference ([+-]\d+)\)", dense)
check(m is not None, f"dense model line: {dense.splitlines()[1]!r}")
if m:
    total, active, target, diff = (int(x) for x in m.groups())
    check(target == moe_active and active - target == diff, f"dense {active} vs st_moe {moe_active} ({diff})")
    check(total == active and abs(diff) <= (3 * 32 + 3) // 2, f"dense is within half a hidden unit: {diff}")

# 7. A capacity factor below the minimum capacity is noted once.
p = run(["--steps", "1", "--warmup", "0", "--no-progress", "--capacity-factor", "0.01"])
notes = [l for l in p.stderr.splitlines() if l.startswith("note: --capacity-factor")]
check(notes == ["note: --capacity-factor 0.01 gives capacity 4 = the minimum (min_expert_capacity) for 16 tokens "
                "per sequence and 16 experts: the factor has no effect below 5"], f"capacity note: {notes}")
p = run(["--steps", "1", "--warmup", "0", "--no-progress", "--capacity-factor", "6"])
check("note: --capacity-factor" not in p.stderr, "no note when the factor matters")

if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all train run checks passed")
