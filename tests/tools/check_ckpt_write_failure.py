#!/usr/bin/env python3
"""A checkpoint write that fails, seen from `moegrad train`: an injected full disk
(MOEGRAD_FAULT_WRITE_FAIL_AFTER_BYTES, always run) and a real one (a 512 KiB tmpfs, when run as
root; skipped with a message otherwise). Each must end the run with exit 1 and one line, no
signal, no temporary file, and every earlier checkpoint intact and loadable. Also a
--ckpt-dir that cannot be written fails at start, before any step.

usage: check_ckpt_write_failure.py MOEGRAD_BIN WORK_DIR
"""
import os
import shutil
import subprocess
import sys

import h5py

BIN, WORK = sys.argv[1], sys.argv[2]
SMALL = ["--dim", "8", "--hidden", "8", "--experts", "4", "--input-dim", "6", "--clusters", "3",
         "--batch-size", "4", "--seq-len", "6", "--warmup", "0", "--eval-every", "1000", "--eval-batches", "1",
         "--log-every", "1", "--ckpt-every", "2", "--keep-last", "0", "--seed", "3", "--no-progress"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def fresh(name):
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def train(args, env=None):
    return subprocess.run([BIN, "train"] + SMALL + args, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


def inspect_ok(path):
    p = subprocess.run([BIN, "inspect", path], capture_output=True, text=True)
    return p.returncode == 0 and "content crc64" in p.stdout


def tensors(path):
    """Every dataset's path and raw bytes."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()].tobytes()) if isinstance(obj, h5py.Dataset) else None)
    return out


def check_failed_run(p, ckpt, label, at_least):
    lines = p.stderr.strip().splitlines()
    check(p.returncode == 1, f"{label}: exit {p.returncode}, expected 1 (a negative code is a signal)\n{p.stderr}")
    errors = [l for l in lines if l.startswith("moegrad train: [")]
    check(len(errors) == 1 and errors[0] == lines[-1], f"{label}: one error line, last: {lines[-3:]}")
    check("No space left on device" in lines[-1] and "cannot write '" in lines[-1], f"{label}: names ENOSPC: {lines[-1]}")
    check(not any("HDF5" in l for l in lines), f"{label}: no HDF5 error stack on stderr")
    names = sorted(os.listdir(ckpt))
    check(not any(".tmp-" in n for n in names), f"{label}: the temporary file was removed: {names}")
    saved = [n for n in names if n.startswith("step-")]
    check(len(saved) >= at_least, f"{label}: earlier checkpoints are still there: {names}")
    for n in saved:
        check(inspect_ok(os.path.join(ckpt, n)), f"{label}: {n} loads")
    return saved


# 1. Injected: the disk "fills" after one and a half checkpoints.
ref = fresh("reference")
p = train(["--steps", "6", "--ckpt-dir", f"{ref}/ckpt"])
check(p.returncode == 0, f"reference run: {p.stderr}")
size = os.path.getsize(f"{ref}/ckpt/step-000000002.h5")
d = fresh("injected")
p = train(["--steps", "6", "--ckpt-dir", f"{d}/ckpt"], env={"MOEGRAD_FAULT_WRITE_FAIL_AFTER_BYTES": str(size + size // 2)})
saved = check_failed_run(p, f"{d}/ckpt", "injected full disk", 1)
check(saved == ["step-000000002.h5"], f"injected: only step 2 was saved: {saved}")
check(f"cannot write '{d}/ckpt/step-000000004.h5': No space left on device" in p.stderr, "injected: names step 4")
check(tensors(f"{d}/ckpt/step-000000002.h5") == tensors(f"{ref}/ckpt/step-000000002.h5"),
      "injected: step 2 holds the reference run's step 2 tensors, bit for bit")
# The run resumes from step 2 once the disk has room again.
p = train(["--steps", "6", "--ckpt-dir", f"{d}/ckpt"])
check(p.returncode == 0 and "at step 2" in p.stderr, f"injected: resume after the failure: {p.stderr[-400:]}")

# 2. A real full disk (tmpfs of 512 KiB: one checkpoint of about 280 KB fits, the next does not) and
# a read-only folder, as root.
if os.geteuid() != 0:
    print("check_ckpt_write_failure: not root, tmpfs part skipped")
else:
    d = fresh("tmpfs")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", d], capture_output=True).returncode == 0
    if not mounted:
        print("check_ckpt_write_failure: mount -t tmpfs failed, tmpfs part skipped")
    else:
        try:
            p = train(["--steps", "200", "--ckpt-dir", f"{d}/ckpt"])
            check_failed_run(p, f"{d}/ckpt", "tmpfs full disk", 1)
        finally:
            subprocess.run(["umount", d])
    d = fresh("readonly")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", d], capture_output=True).returncode == 0
    if mounted:
        try:
            p = train(["--steps", "4", "--ckpt-dir", d])
            lines = p.stderr.strip().splitlines()
            check(p.returncode == 1 and lines[-1] == f"moegrad train: [checkpoint] the checkpoint folder '{d}' is not "
                  "writable: cannot write a file in it: Read-only file system", f"read-only folder: {lines[-2:]}")
            check(not any("step 1/" in l for l in lines), "read-only folder: refused before the first step")
        finally:
            subprocess.run(["umount", d])

if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all checkpoint write failure checks passed")
