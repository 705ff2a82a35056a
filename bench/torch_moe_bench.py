#!/usr/bin/env python3
"""The published PyTorch MoE layers on CPU, timed the way bench/bench_moe.cpp times moegrad's.

Models: lucidrains `mixture-of-experts` 0.2.3 `MoE` ("lucidrains.MoE", always top-2) and
`st-moe-pytorch` 0.1.8 `MoE` ("st_moe.MoE", top-k = the workload's k), on Debian's torch
1.13.1 (run with build/reference-venv/bin/python; `scripts/reference-env` creates it).

Workloads (bench_moe's; --quick shrinks them like bench_moe --quick):
  W1 d256  h1024 e8  k2, 8x256 tokens   W2 d1024 h4096 e8 k2, 4x256   W3 d1024 h512 e64 k8, 8x256
lucidrains: MoE(dim=d, num_experts=e, hidden_dim=h) (ReLU, second policy 'random').
st_moe:     MoE(dim=d, num_experts=e, gating_top_n=k, expert_hidden_mult=m), m with
            int(d*m*2/3) == h (W1/W2 6.0, W3 0.75; asserted on the built expert).
Both: capacity factor train 1.25 (the default), .train(), x = randn(b, n, d) with
requires_grad (dL/dx is computed, as in bench_moe), a fixed g = randn(b, n, d).

Per repeat (after --warmup untimed repeats; medians over --repeat):
  fwd_ms   forward with grad enabled (the graph is recorded as in training; freed after the timer)
  step_ms  zero_grad(set_to_none=True) + forward + backward of L = sum(out * g) + aux loss
           (moegrad's Module::zero_grad also drops the gradients)
Peak memory (peak_mb): every (workload, model) runs in a fresh child process. The child first
runs two steps of the same model at the --quick shapes (so the code pages of the forward and
backward paths are already resident), frees them, builds the model, x and g, and records
VmRSS; it then resets the kernel's high-water mark (writes 5 to /proc/self/clear_refs) and
after the warm-up and timed repeats reads VmHWM. peak_mb = VmHWM - that VmRSS: the peak RSS
growth of the training steps over the state before them (weights, x, g resident), i.e.
parameter gradients, activations, saved tensors, temporaries and what the allocator keeps.
The child also reports rss_hwm_mb (its whole-life peak RSS), param_mb and io_mb (x and g),
which bench/compare_cpu uses to check its estimate for moegrad against peak_mb.

BLAS: Debian's torch calls BLAS through libblas.so.3 / libopenblas.so.0, which the Debian
alternatives point at OpenBLAS's pthread build by default. Its thread pool competes with
torch's OpenMP pool on 2 cores (the problem moegrad avoids by linking OpenBLAS's OpenMP build)
and makes the steps 2-3x slower, so --blas openmp (the default) runs the child with
LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp: the same OpenBLAS 0.3.21, OpenMP
build, as moegrad links. --blas system keeps whatever the alternatives select. The JSON
key "blas" names the libopenblas the child actually mapped.

Output: one JSON line per (workload, model) on stdout with the keys workload, model, device
("cpu"), fwd_ms, step_ms, peak_mb, threads, k, impl ("pytorch") and more; progress on stderr.
--profile also prints torch.profiler's top ops (by self CPU time) of 3 steps to stderr.
"""
import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time

WORKLOADS = {  # name: (d, h, e, k, b, n, st expert_hidden_mult)
    "W1": (256, 1024, 8, 2, 8, 256, 6.0),
    "W2": (1024, 4096, 8, 2, 4, 256, 6.0),
    "W3": (1024, 512, 64, 8, 8, 256, 0.75),
}
QUICK = {  # bench_moe --quick: same experts and top-k, tiny dims
    "W1": (32, 128, 8, 2, 2, 32, 6.0),
    "W2": (128, 512, 8, 2, 2, 32, 6.0),
    "W3": (128, 64, 64, 8, 2, 32, 0.75),
}
MODELS = ("lucidrains.MoE", "st_moe.MoE")
MIN_EXPERT_CAPACITY = 4


def proc_status_kb(*keys):
    text = open("/proc/self/status").read()
    return [int(re.search(rf"^{k}:\s+(\d+) kB", text, re.M).group(1)) for k in keys]


def load1():
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except OSError:
        return -1.0


OPENBLAS_OPENMP_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp"


def loaded_blas():
    """The BLAS library file this process mapped (resolved), or '?'."""
    for line in open("/proc/self/maps"):
        path = line.split()[-1] if len(line.split()) >= 6 else ""
        if re.search(r"/lib(open)?blas[^/]*\.so", path):
            if "openblas" in path:
                return os.path.realpath(path)
    return "?"


def build(model_name, shape):
    import torch

    d, h, e, k, b, n, mult = shape
    if model_name == "lucidrains.MoE":
        from mixture_of_experts import MoE

        model = MoE(dim=d, num_experts=e, hidden_dim=h)
        assert tuple(model.experts.w1.shape) == (e, d, h), model.experts.w1.shape
        assert model.gate.capacity_factor_train == 1.25

        def forward(x):
            return model(x)  # (output, loss * loss_coef)

        k_used = 2
    elif model_name == "st_moe.MoE":
        from st_moe_pytorch import MoE

        model = MoE(dim=d, num_experts=e, gating_top_n=k, expert_hidden_mult=mult)
        net = model.experts.experts[0].net
        assert net[0].out_features == 2 * h and net[-1].in_features == h, \
            f"st expert hidden {net[-1].in_features} != h {h} (mult {mult})"
        assert model.gate.capacity_factor_train == 1.25

        def forward(x):
            r = model(x)
            return r.outputs, r.total_aux_loss

        k_used = k
    else:
        raise SystemExit(f"torch_moe_bench: unknown model {model_name}")
    model.train()
    return model, forward, k_used


def child(args):
    """One (workload, model) in this process; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    shape = (QUICK if args.quick else WORKLOADS)[args.workload]
    d, h, e, k, b, n, _ = shape

    def run_steps(forward, model, x, g, count):
        for _ in range(count):
            model.zero_grad(set_to_none=True)
            x.grad = None
            out, aux = forward(x)
            ((out * g).sum() + aux).backward()

    # Touch the code paths first at the tiny shapes, so that the memory figure below counts data.
    torch.manual_seed(1)
    warm_model, warm_fwd, _ = build(args.model, QUICK[args.workload])
    wx = torch.randn(QUICK[args.workload][4:6] + (QUICK[args.workload][0],), requires_grad=True)
    run_steps(warm_fwd, warm_model, wx, torch.randn_like(wx), 2)
    del warm_model, warm_fwd, wx
    gc.collect()

    torch.manual_seed(1234)
    model, forward, k_used = build(args.model, shape)
    gen = torch.Generator().manual_seed(99)
    x = torch.randn(b, n, d, generator=gen).requires_grad_(True)
    g = torch.randn(b, n, d, generator=gen)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    io_bytes = 2 * x.numel() * x.element_size()
    capacity = max(min(n, int(n * 1.25 / e)), MIN_EXPERT_CAPACITY)
    gc.collect()

    hwm_before, rss_before = proc_status_kb("VmHWM", "VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")

    def sample():
        t0 = time.perf_counter()
        out, aux = forward(x)
        fwd = time.perf_counter() - t0
        del out, aux
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        x.grad = None
        out, aux = forward(x)
        loss = (out * g).sum() + aux
        loss.backward()
        step = time.perf_counter() - t0
        del out, aux, loss
        return fwd * 1e3, step * 1e3

    load_before = load1()
    print(f"torch_moe_bench: {args.workload} {args.model} (d{d} h{h} e{e} k{k_used}, {b}x{n} tokens): "
          f"{args.warmup} warm-up + {args.repeat} repeats, {torch.get_num_threads()} threads", file=sys.stderr)
    for _ in range(args.warmup):
        sample()
    samples = [sample() for _ in range(args.repeat)]
    hwm_after, = proc_status_kb("VmHWM")
    model.zero_grad(set_to_none=True)
    x.grad = None

    rec = {
        "bench": "moe", "impl": "pytorch", "workload": args.workload, "model": args.model, "device": "cpu",
        "dtype": "f32", "quick": args.quick, "d": d, "h": h, "e": e, "k": k_used, "tokens": b * n,
        "capacity": capacity, "expert_rows": e * b * capacity, "threads": torch.get_num_threads(),
        "repeat": args.repeat, "warmup": args.warmup,
        "fwd_ms": round(statistics.median(s[0] for s in samples), 3),
        "step_ms": round(statistics.median(s[1] for s in samples), 3),
        "fwd_ms_min": round(min(s[0] for s in samples), 3),
        "step_ms_min": round(min(s[1] for s in samples), 3),
        "peak_mb": round((hwm_after - rss_before) / 1024, 1),
        "rss_before_mb": round(rss_before / 1024, 1),
        "rss_hwm_mb": round(max(hwm_before, hwm_after) / 1024, 1),
        "param_mb": round(param_bytes / 2**20, 2), "io_mb": round(io_bytes / 2**20, 2),
        "torch": torch.__version__, "blas": loaded_blas(), "load1": [load_before, load1()],
    }
    print(json.dumps(rec), flush=True)
    print(f"  fwd {rec['fwd_ms']:.2f} ms, step {rec['step_ms']:.2f} ms, step peak +{rec['peak_mb']:.0f} MB "
          f"(weights {rec['param_mb']:.0f} MB)", file=sys.stderr)

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run_steps(forward, model, x, g, 3)
        print(f"torch_moe_bench: {args.workload} {args.model}: torch.profiler, 3 steps (fwd + bwd), "
              f"top ops by self CPU time", file=sys.stderr)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows),
              file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--workload", default="all", choices=["W1", "W2", "W3", "all"])
    p.add_argument("--model", default="all", choices=[*MODELS, "all"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny shapes (bench_moe --quick's), for a smoke test")
    p.add_argument("--blas", default="openmp", choices=["openmp", "system"],
                   help="openmp: OpenBLAS's OpenMP build (moegrad's BLAS; default); system: the alternatives' choice")
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top ops to stderr")
    p.add_argument("--profile-rows", type=int, default=15)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.repeat < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--repeat and --threads take positive integers, --warmup a non-negative one")

    if args.child:
        child(args)
        return 0

    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(args.threads)
    env["OPENBLAS_NUM_THREADS"] = str(args.threads)
    if args.blas == "openmp":
        if not os.path.isfile(os.path.join(OPENBLAS_OPENMP_DIR, "libopenblas.so.0")):
            p.error(f"--blas openmp: {OPENBLAS_OPENMP_DIR} has no libopenblas.so.0 (apt-get install "
                    f"libopenblas0-openmp, or pass --blas system)")
        env["LD_LIBRARY_PATH"] = OPENBLAS_OPENMP_DIR + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]
    models = list(MODELS) if args.model == "all" else [args.model]
    status = 0
    for w in workloads:
        for m in models:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", "--workload", w, "--model", m,
                   "--threads", str(args.threads), "--repeat", str(args.repeat), "--warmup", str(args.warmup),
                   "--profile-rows", str(args.profile_rows)]
            cmd += ["--quick"] * args.quick + ["--profile"] * args.profile
            r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
            sys.stdout.write(r.stdout)
            sys.stdout.flush()
            if r.returncode != 0:
                print(f"torch_moe_bench: {w} {m} failed (exit {r.returncode})", file=sys.stderr)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
