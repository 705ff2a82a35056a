#!/usr/bin/env python3
"""`mpirun -np W moegrad train --expert-parallel P --grad-accum A`: the guarantee of issue 14 and
its faults, end to end.

  equivalence  20 steps at (W, P, A) = (1, 1, 4), (2, 2, 2), (4, 2, 1), (4, 4, 1) end with the same
               parameters (<= 1e-5 relative) for st_moe (gate noise, capacity drops), st_moe
               dropless, lucidrains and hierarchical; two runs of one configuration are
               bit-identical
  resharding   a checkpoint written at W = 4 resumes at W = 2 and W = 1, one written at W = 1
               resumes at W = 4, and each continues the uninterrupted trajectory
  faults       a rank that SIGKILLs itself ends the job within 60 s, the last checkpoint is
               intact and --resume auto continues at a smaller W; a rank stopped by SIGSTOP
               makes the others abort after --collective-timeout with a line naming the
               collective, the step and the rank
  bad input    P not dividing W or the experts, ranks that disagree on the configuration, a
               checkpoint of another model, --expert-parallel without mpirun: one line each

usage: check_dist_train.py MOEGRAD_BIN WORK_DIR [--quick]
Exit 77 (skipped) when mpirun is not installed or moegrad was built without MPI.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from checkpoint_compare import max_relative_difference, model_params

BIN, WORK = sys.argv[1], sys.argv[2]
QUICK = "--quick" in sys.argv[3:]
MPIRUN = shutil.which("mpirun")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
           OMPI_MCA_btl="self,vader", OMPI_MCA_rmaps_base_oversubscribe="1",
           # Open MPI's own allocations are not ours to report (sanitizer builds).
           ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)
    return cond


def base(model, steps=20):
    extra = {
        "st_moe": ["--model", "st_moe", "--noise-gates", "--capacity-factor", "0.75"],
        "st_moe-dropless": ["--model", "st_moe", "--noise-gates", "--dropless"],
        "lucidrains": ["--model", "lucidrains", "--capacity-factor", "1.0"],
        "hierarchical": ["--model", "hierarchical", "--experts-outer", "2", "--capacity-factor", "1.0", "--seq-len", "16"],
    }[model]
    return override(["--dim", "8", "--hidden", "16", "--experts", "4", "--input-dim", "8", "--clusters", "4",
                    "--batch-size", "2", "--seq-len", "8", "--steps", str(steps), "--warmup", "2", "--lr", "1e-2",
                    "--eval-every", "10", "--eval-batches", "3", "--log-every", "5", "--ckpt-every", "5",
                    "--keep-last", "0", "--seed", "5", "--no-progress", "--collective-timeout", "60"], extra)


def override(args, extra):
    """args with extra's flags replacing the same flags in args (a flag followed by its value)."""
    out, extra = list(args), list(extra)
    i = 0
    while i < len(extra):
        flag = extra[i]
        has_value = i + 1 < len(extra) and not extra[i + 1].startswith("--")
        if flag in out:
            j = out.index(flag)
            del out[j:j + (2 if j + 1 < len(out) and not out[j + 1].startswith("--") else 1)]
        out += extra[i:i + (2 if has_value else 1)]
        i += 2 if has_value else 1
    return out


def launch(world, args, env=None, timeout=240):
    cmd = [BIN, "train"] + args
    if world > 1 or "--use-mpirun" in args:
        cmd = [MPIRUN, "--oversubscribe", "-np", str(world)] + cmd
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env or ENV,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        out, _ = p.communicate()
        return 124, out + "\n<killed: timed out>", time.monotonic() - t0
    return p.returncode, out, time.monotonic() - t0


def train(name, world, p, a, model, extra=(), expect=0, env=None):
    d = os.path.join(WORK, name)
    args = override(base(model) + ["--expert-parallel", str(p), "--grad-accum", str(a), "--ckpt-dir", d,
                                   "--metrics", os.path.join(d, "metrics.jsonl")], extra)
    rc, out, secs = launch(world, args, env)
    if expect is not None:
        check(rc == expect, f"{name}: exit {rc}, expected {expect}\n{out[-3000:]}")
    return d, rc, out, secs


def latest(folder):
    files = sorted(f for f in os.listdir(folder) if f.startswith("step-") and f.endswith(".h5"))
    return os.path.join(folder, files[-1])


def close(name, a, b, tol=1e-5):
    if not check(a.keys() == b.keys(), f"{name}: different parameter names {sorted(a)[:4]} vs {sorted(b)[:4]}"):
        return
    worst = max_relative_difference(a, b)
    print(f"  {name}: max relative difference {worst:.2e}", flush=True)
    check(worst <= tol, f"{name}: parameters differ by {worst:.3e} relative (> {tol})")


def same_bits(name, a, b):
    check(a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), f"{name}: not bit-identical")


def one_line_with(out, *words):
    return any(all(w in line for w in words) for line in out.splitlines())


def main():
    if not MPIRUN:
        print("skipped: mpirun is not installed (apt-get install openmpi-bin)")
        return 77
    info = subprocess.run([BIN, "info"], capture_output=True, text=True).stdout
    if "MPI yes" not in info:
        print("skipped: this moegrad was built without MPI")
        return 77
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    layouts = [(1, 1, 4), (2, 2, 2), (4, 2, 1), (4, 4, 1)]
    models = ["st_moe", "st_moe-dropless", "lucidrains", "hierarchical"]
    if QUICK:
        layouts, models = [(1, 1, 4), (4, 2, 1)], ["st_moe"]

    print("equivalence:", flush=True)
    final, evals = {}, {}
    for model in models:
        for (w, p, a) in layouts:
            d, rc, out, secs = train(f"{model}-w{w}p{p}a{a}", w, p, a, model)
            print(f"  {model} (W, P, A) = ({w}, {p}, {a}): exit {rc} in {secs:.1f} s", flush=True)
            if rc == 0:
                final[(model, w, p, a)] = model_params(latest(d))
                evals[(model, w, p, a)] = [json.loads(line)["eval_loss"] for line in open(os.path.join(d, "metrics.jsonl"))
                                           if "eval_loss" in json.loads(line)]
            if rc == 0 and (w, p, a) == layouts[0] and "dropless" not in model:
                # The comparison must cover capacity drops: the run's metrics show them.
                dropped = max(layer["dropped_fraction"] for line in open(os.path.join(d, "metrics.jsonl"))
                              for layer in json.loads(line).get("layers", []))
                check(dropped > 0, f"{model}: no token was dropped in the run (the test must cover drops)")
        ref = final.get((model,) + layouts[0])
        for (w, p, a) in layouts[1:]:
            got = final.get((model, w, p, a))
            if ref is not None and got is not None:
                close(f"{model} ({w},{p},{a}) vs {layouts[0]}", got, ref)
            # The evaluations (shared among the ranks, summed) are the one process's too.
            e_ref, e_got = evals.get((model,) + layouts[0]), evals.get((model, w, p, a))
            if e_ref and e_got:
                worst = max(abs(x - y) / abs(y) for x, y in zip(e_got, e_ref))
                check(len(e_got) == len(e_ref) and worst <= 1e-5,
                      f"{model} ({w},{p},{a}): eval losses {e_got} vs {e_ref} (one process)")

    print("bit-identical reruns:", flush=True)
    d, rc, _, _ = train("st_moe-rerun", 4, 2, 1, "st_moe")
    if rc == 0 and ("st_moe", 4, 2, 1) in final:
        same_bits("st_moe (4,2,1) twice", model_params(latest(d)), final[("st_moe", 4, 2, 1)])

    print("resharding:", flush=True)
    ref = final.get(("st_moe", 4, 2, 1))
    d4, rc, _, _ = train("reshard-w4", 4, 2, 1, "st_moe", ["--stop-at", "10"])
    for (w, p, a) in [(2, 2, 2), (1, 1, 4)]:
        d = os.path.join(WORK, f"reshard-w4-to-w{w}")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(d4, d)
        _, rc, out, _ = train(f"reshard-w4-to-w{w}", w, p, a, "st_moe")
        check("resumed from" in out, f"W=4 -> W={w}: did not resume\n{out[-2000:]}")
        if rc == 0 and ref is not None:
            close(f"checkpoint of W=4 resumed at W={w}", model_params(latest(d)), ref)
    d1, rc, _, _ = train("reshard-w1", 1, 1, 4, "st_moe", ["--stop-at", "10"])
    _, rc, out, _ = train("reshard-w1", 4, 4, 1, "st_moe")
    if rc == 0 and ref is not None:
        close("checkpoint of W=1 resumed at W=4 (P=4)", model_params(latest(d1)), ref)

    print("faults:", flush=True)
    env = dict(ENV, MOEGRAD_FAULT_SIGNAL="KILL:1:13")
    d, rc, out, secs = train("kill", 4, 2, 1, "st_moe", env=env, expect=None)
    check(rc != 0 and rc != 124 and secs < 60, f"a SIGKILLed rank: exit {rc} after {secs:.1f} s\n{out[-2000:]}")
    print(f"  SIGKILL of rank 1 at step 13: exit {rc} after {secs:.1f} s", flush=True)
    check(os.path.basename(latest(d)) == "step-000000010.h5", f"after the kill the newest checkpoint is {latest(d)}")
    _, rc, out, _ = train("kill", 2, 2, 2, "st_moe")
    check("resumed from" in out and "step-000000010.h5" in out, f"--resume auto after the kill:\n{out[-2000:]}")
    if rc == 0 and ref is not None:
        close("killed at W=4, resumed at W=2", model_params(latest(d)), ref)

    env = dict(ENV, MOEGRAD_FAULT_SIGNAL="STOP:1:3")
    d, rc, out, secs = train("stop", 2, 2, 1, "st_moe", ["--collective-timeout", "3"], env=env, expect=None)
    print(f"  SIGSTOP of rank 1 at step 3: exit {rc} after {secs:.1f} s", flush=True)
    check(rc != 0 and rc != 124 and secs < 60, f"a stopped rank: exit {rc} after {secs:.1f} s\n{out[-2000:]}")
    check(one_line_with(out, "did not complete within 3 s", "step 3", "rank 1"),
          f"a stopped rank: no line naming the collective, step 3 and rank 1:\n{out[-2000:]}")

    print("bad input:", flush=True)
    _, rc, out, _ = train("bad-p-w", 4, 3, 1, "st_moe", expect=None)
    check(rc != 0 and one_line_with(out, "--expert-parallel 3", "world size 4"), f"P=3 at W=4:\n{out[-1500:]}")
    _, rc, out, _ = train("bad-p-e", 4, 4, 1, "st_moe", ["--experts", "6"], expect=None)
    check(rc != 0 and one_line_with(out, "6", "4") and "expert" in out, f"P=4 with 6 experts:\n{out[-1500:]}")
    _, rc, out, _ = train("bad-no-mpi", 1, 2, 1, "st_moe", expect=None)
    check(rc != 0 and one_line_with(out, "--expert-parallel 2", "mpirun -np"), f"P=2 without mpirun:\n{out[-1500:]}")
    cmd = [MPIRUN, "--oversubscribe", "-np", "2", "sh", "-c",
           f'exec "{BIN}" train --steps 4 --seed $OMPI_COMM_WORLD_RANK --no-progress']
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    out = p.stdout + p.stderr
    check(p.returncode != 0 and one_line_with(out, "disagree on the configuration", "--seed"), f"ranks with different seeds:\n{out[-1500:]}")
    other = override(base("st_moe"), ["--dim", "12", "--expert-parallel", "2", "--ckpt-dir", os.path.join(WORK, "reshard-w1")])
    rc, out, _ = launch(2, other)
    check(rc != 0 and one_line_with(out, "another model"), f"a checkpoint of another model:\n{out[-1500:]}")

    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("all distributed training checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
