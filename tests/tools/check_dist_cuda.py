#!/usr/bin/env python3
"""Distributed training on a GPU against the CPU (issue 14; run by scripts/gpu-test, skipped
without a GPU): the same 10 st_moe steps (gate noise, capacity drops) as
  - 1 rank on cuda (mpirun -np 1: an MPI world of one, the NCCL path where NCCL is built),
  - 2 ranks sharing one GPU with --expert-parallel 2 (CUDA tensors through MPI host staging),
  - 2 ranks with MOEGRAD_DIST_CUDA=host forced (staging even where NCCL could run),
must end with the CPU run's parameters (same world size and layout) within 1e-4 relative.

usage: check_dist_cuda.py MOEGRAD_BIN WORK_DIR
Exit 77 (skipped) without mpirun, MPI or a CUDA device.
"""
import os
import shutil
import subprocess
import sys

from checkpoint_compare import max_relative_difference, model_params

BIN, WORK = sys.argv[1], sys.argv[2]
MPIRUN = shutil.which("mpirun")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
           OMPI_MCA_btl="self,vader", OMPI_MCA_rmaps_base_oversubscribe="1")
ARGS = ["--model", "st_moe", "--noise-gates", "--capacity-factor", "0.75", "--dim", "16", "--hidden", "32",
        "--experts", "4", "--input-dim", "8", "--clusters", "4", "--batch-size", "4", "--seq-len", "16", "--steps", "10",
        "--warmup", "2", "--eval-every", "5", "--eval-batches", "2", "--ckpt-every", "10", "--seed", "3", "--no-progress",
        "--collective-timeout", "120"]


def main():
    if not MPIRUN:
        print("skipped: mpirun is not installed")
        return 77
    info = subprocess.run([BIN, "info"], capture_output=True, text=True).stdout
    if "MPI yes" not in info:
        print("skipped: built without MPI")
        return 77
    devices = [l for l in info.splitlines() if "cuda devices" in l]
    if not devices or devices[0].split(":")[-1].strip() in ("", "0"):
        print("skipped: no CUDA device")
        return 77
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    failures = []

    def run(name, ranks, extra, env=None):
        d = os.path.join(WORK, name)
        cmd = [MPIRUN, "-np", str(ranks), BIN, "train"] + ARGS + extra + ["--ckpt-dir", d]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, timeout=600)
        print(f"$ {' '.join(cmd[3:])}: exit {p.returncode}")
        if p.returncode != 0:
            failures.append(f"{name}: exit {p.returncode}\n{(p.stdout + p.stderr)[-2000:]}")
            return None
        return model_params(os.path.join(d, "step-000000010.h5"))

    def close(name, a, b):
        if a is None or b is None:
            return
        worst = max_relative_difference(a, b)
        print(f"  {name}: max relative difference {worst:.2e}")
        if worst > 1e-4:
            failures.append(f"{name}: {worst:.3e} relative (> 1e-4)")

    cpu1 = run("cpu-w1", 1, ["--device", "cpu"])
    close("1 rank on cuda vs cpu", run("cuda-w1", 1, ["--device", "cuda"]), cpu1)
    cpu2 = run("cpu-w2", 2, ["--device", "cpu", "--expert-parallel", "2"])
    close("2 ranks sharing one GPU vs cpu", run("cuda-w2", 2, ["--device", "cuda:0", "--expert-parallel", "2"]), cpu2)
    close("2 ranks, host staging forced, vs cpu",
          run("cuda-w2-host", 2, ["--device", "cuda", "--expert-parallel", "2"], dict(ENV, MOEGRAD_DIST_CUDA="host")), cpu2)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
