#!/usr/bin/env python3
"""The published PyTorch MoE layers (and an index-based PyTorch MoE), timed the way bench/bench_moe.cpp times moegrad's.

Models: lucidrains `mixture-of-experts` 0.2.3 `MoE` ("lucidrains.MoE", always top-2),
`st-moe-pytorch` 0.1.8 `MoE` ("st_moe.MoE", top-k = the workload's k), and the index-based
PyTorch MoE of tests/reference/index_moe.py with st_moe.MoE's semantics and weights
("index.MoE": gather into padded [e, b*capacity, d] buffers + torch.baddbmm + index_add;
"index_loop.MoE": the kept rows compacted in expert-major order + one F.linear pair per
expert). On the CPU: Debian's torch 1.13.1 (run with build/reference-venv/bin/python;
`scripts/reference-env` creates it); on a GPU (--device cuda): any torch with CUDA, the
three packages on PYTHONPATH (bench/compare_gpu).

Workloads (bench_moe's; --quick shrinks them like bench_moe --quick, on both devices):
  cpu:  W1 d256 h1024 e8 k2, 8x256 tokens   W2 d1024 h4096 e8 k2, 4x256   W3 d1024 h512 e64 k8, 8x256
  cuda: the same layers, 8x2048 tokens each (issue 5)
lucidrains: MoE(dim=d, num_experts=e, hidden_dim=h) (ReLU, second policy 'random').
st_moe:     MoE(dim=d, num_experts=e, gating_top_n=k, expert_hidden_mult=m), m with
            int(d*m*2/3) == h (W1/W2 6.0, W3 0.75; asserted on the built expert).
index:      IndexMoE.from_st(st_moe.MoE built as above with the same seed): the same weights.
All: capacity factor train 1.25 (the default), .train(), x = randn(b, n, d) with
requires_grad (dL/dx is computed, as in bench_moe), a fixed g = randn(b, n, d) (x and g drawn
on the CPU, then moved to the device).

Per repeat (after --warmup untimed repeats; medians over --repeat):
  fwd_ms   forward with grad enabled (the graph is recorded as in training; freed after the timer)
  step_ms  zero_grad(set_to_none=True) + forward + backward of L = sum(out * g) + aux loss
           (moegrad's Module::zero_grad also drops the gradients)
On cuda every clock read follows torch.cuda.synchronize(), like bench_moe's core::synchronize.

Peak memory on cuda (peak_mb): before each step the gradients are dropped (outside the timer,
as bench_moe's previous repeat leaves them dropped), torch.cuda.reset_peak_memory_stats(), and
peak_mb = max over the repeats of max_memory_allocated() during the step minus
memory_allocated() before it: the step's growth over weights, x and g (bench_moe's
step_peak_mb from its own caching allocator). peak_allocated_mb is the absolute peak,
max_reserved_mb what the caching allocator held.

Peak memory on cpu (peak_mb): every (workload, model) runs in a fresh child process. The child first
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
("cpu" or "cuda"), fwd_ms, step_ms, peak_mb, threads, k, b, n, tf32, impl ("pytorch") and more
(cpu: blas, rss_*; cuda: peak_allocated_mb, max_reserved_mb, gpu, torch_cuda; index models:
rows, the kept (token, choice) pairs of the last forward); progress on stderr.
--profile also prints torch.profiler's top ops (by self CPU time; on cuda by self device
time) of 3 steps to stderr. --tf32 lets cuBLAS use TF32 for f32 matmuls
(torch.set_float32_matmul_precision("high"); default "highest", FP32), as bench_moe --tf32.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOADS = {  # name: (d, h, e, k, b, n, st expert_hidden_mult)
    "W1": (256, 1024, 8, 2, 8, 256, 6.0),
    "W2": (1024, 4096, 8, 2, 4, 256, 6.0),
    "W3": (1024, 512, 64, 8, 8, 256, 0.75),
}
GPU_WORKLOADS = {  # issue 5: the same layers, 16384 tokens (8 x 2048) each
    "W1": (256, 1024, 8, 2, 8, 2048, 6.0),
    "W2": (1024, 4096, 8, 2, 8, 2048, 6.0),
    "W3": (1024, 512, 64, 8, 8, 2048, 0.75),
}
QUICK = {  # bench_moe --quick: same experts and top-k, tiny dims
    "W1": (32, 128, 8, 2, 2, 32, 6.0),
    "W2": (128, 512, 8, 2, 2, 32, 6.0),
    "W3": (128, 64, 64, 8, 2, 32, 0.75),
}
MODELS = ("lucidrains.MoE", "st_moe.MoE", "index.MoE", "index_loop.MoE")
INDEX_IMPL = {"index.MoE": "bmm", "index_loop.MoE": "loop"}
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
    """The BLAS library file this process mapped (resolved); for a torch without one (PyPI's
    wheels link MKL statically into libtorch_cpu) "MKL <version> inside torch"; else '?'."""
    for line in open("/proc/self/maps"):
        path = line.split()[-1] if len(line.split()) >= 6 else ""
        if re.search(r"/lib(open)?blas[^/]*\.so", path):
            if "openblas" in path:
                return os.path.realpath(path)
    import torch
    if torch.backends.mkl.is_available():
        m = re.search(r"Intel\(R\) oneAPI Math Kernel Library Version ([0-9.]+)", torch.__config__.show())
        return f"MKL {m.group(1) if m else ''} inside torch".replace("  ", " ")
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
    elif model_name in INDEX_IMPL:
        from st_moe_pytorch import MoE

        sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
        from index_moe import IndexMoE

        st = MoE(dim=d, num_experts=e, gating_top_n=k, expert_hidden_mult=mult)  # the weights st_moe.MoE gets
        model = IndexMoE.from_st(st, experts=INDEX_IMPL[model_name])
        del st
        assert model.hidden_dim == h, f"index expert hidden {model.hidden_dim} != h {h}"

        def forward(x):
            out, total, _, _ = model(x)
            return out, total

        k_used = k
    else:
        raise SystemExit(f"torch_moe_bench: unknown model {model_name}")
    model.train()
    return model, forward, k_used


def child(args):
    """One (workload, model) in this process; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit(f"torch_moe_bench: --device cuda: torch {torch.__version__} sees no CUDA device "
                         f"(torch.version.cuda {torch.version.cuda})")
    dev = torch.device(args.device)
    if cuda:
        torch.set_float32_matmul_precision("high" if args.tf32 else "highest")
    shape = (QUICK if args.quick else GPU_WORKLOADS if cuda else WORKLOADS)[args.workload]
    d, h, e, k, b, n, _ = shape

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def run_steps(forward, model, x, g, count):
        for _ in range(count):
            model.zero_grad(set_to_none=True)
            x.grad = None
            out, aux = forward(x)
            ((out * g).sum() + aux).backward()

    # Touch the code paths first at the tiny shapes, so that the memory figure below counts data.
    torch.manual_seed(1)
    qshape = QUICK[args.workload]
    warm_model, warm_fwd, _ = build(args.model, qshape)
    warm_model.to(dev)
    wx = torch.randn(qshape[4:6] + (qshape[0],), device=dev, requires_grad=True)
    run_steps(warm_fwd, warm_model, wx, torch.randn_like(wx), 2)
    del warm_model, warm_fwd, wx
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()

    torch.manual_seed(1234)
    model, forward, k_used = build(args.model, shape)
    model.to(dev)
    gen = torch.Generator().manual_seed(99)
    x = torch.randn(b, n, d, generator=gen).to(dev).requires_grad_(True)
    g = torch.randn(b, n, d, generator=gen).to(dev)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    io_bytes = 2 * x.numel() * x.element_size()
    capacity = max(min(n, int(n * 1.25 / e)), MIN_EXPERT_CAPACITY)
    gc.collect()
    sync()

    hwm_before, rss_before = proc_status_kb("VmHWM", "VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")
    gpu_peak = {"step": 0, "abs": 0}

    def sample():
        sync()
        t0 = time.perf_counter()
        out, aux = forward(x)
        sync()
        fwd = time.perf_counter() - t0
        del out, aux
        if cuda:  # the step's own peak: gradients dropped first, as bench_moe leaves them
            model.zero_grad(set_to_none=True)
            x.grad = None
            sync()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        x.grad = None
        out, aux = forward(x)
        loss = (out * g).sum() + aux
        loss.backward()
        sync()
        step = time.perf_counter() - t0
        if cuda:
            peak = torch.cuda.max_memory_allocated()
            gpu_peak["step"] = max(gpu_peak["step"], peak - base)
            gpu_peak["abs"] = max(gpu_peak["abs"], peak)
        del out, aux, loss
        return fwd * 1e3, step * 1e3

    load_before = load1()
    where = f"{torch.cuda.get_device_name()}" if cuda else f"{torch.get_num_threads()} threads"
    print(f"torch_moe_bench: {args.workload} {args.model} on {args.device} (d{d} h{h} e{e} k{k_used}, {b}x{n} "
          f"tokens): {args.warmup} warm-up + {args.repeat} repeats, {where}", file=sys.stderr)
    for _ in range(args.warmup):
        sample()
    gpu_peak = {"step": 0, "abs": 0}
    samples = [sample() for _ in range(args.repeat)]
    hwm_after, = proc_status_kb("VmHWM")
    model.zero_grad(set_to_none=True)
    x.grad = None

    rec = {
        "bench": "moe", "impl": "pytorch", "workload": args.workload, "model": args.model, "device": args.device,
        "dtype": "f32", "quick": args.quick, "d": d, "h": h, "e": e, "k": k_used, "b": b, "n": n, "tokens": b * n,
        "capacity": capacity, "expert_rows": e * b * capacity, "threads": torch.get_num_threads(),
        "repeat": args.repeat, "warmup": args.warmup, "tf32": args.tf32,
        "fwd_ms": round(statistics.median(s[0] for s in samples), 3),
        "step_ms": round(statistics.median(s[1] for s in samples), 3),
        "fwd_ms_min": round(min(s[0] for s in samples), 3),
        "step_ms_min": round(min(s[1] for s in samples), 3),
        "rss_before_mb": round(rss_before / 1024, 1),
        "rss_hwm_mb": round(max(hwm_before, hwm_after) / 1024, 1),
        "param_mb": round(param_bytes / 2**20, 2), "io_mb": round(io_bytes / 2**20, 2),
        "torch": torch.__version__, "load1": [load_before, load1()],
    }
    if cuda:
        rec.update({
            "peak_mb": round(gpu_peak["step"] / 2**20, 1),
            "peak_allocated_mb": round(gpu_peak["abs"] / 2**20, 1),
            "max_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1),
            "gpu": torch.cuda.get_device_name(), "torch_cuda": torch.version.cuda,
        })
    else:
        rec.update({"peak_mb": round((hwm_after - rss_before) / 1024, 1), "blas": loaded_blas()})
    if getattr(model, "last_kept", None) is not None:  # index models: kept (token, choice) pairs
        rec["rows"] = int(model.last_kept.item())
    print(json.dumps(rec), flush=True)
    print(f"  fwd {rec['fwd_ms']:.2f} ms, step {rec['step_ms']:.2f} ms, step peak +{rec['peak_mb']:.0f} MB "
          f"(weights {rec['param_mb']:.0f} MB)", file=sys.stderr)

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            run_steps(forward, model, x, g, 3)
            sync()
        keys = ["self_device_time_total", "self_cuda_time_total"] if cuda else ["self_cpu_time_total"]
        table = None
        for key in keys:  # the device key's name changed across torch versions
            try:
                table = prof.key_averages().table(sort_by=key, row_limit=args.profile_rows)
                break
            except (AttributeError, KeyError, ValueError):
                continue
        print(f"torch_moe_bench: {args.workload} {args.model}: torch.profiler, 3 steps (fwd + bwd), "
              f"top ops by {key.replace('_', ' ')}", file=sys.stderr)
        print(table, file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--workload", default="all", choices=["W1", "W2", "W3", "all"])
    p.add_argument("--model", default="all", choices=[*MODELS, "all"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cpu (the issue-3 workloads) or cuda (cuda:0, the issue-5 workloads of 8x2048 tokens)")
    p.add_argument("--tf32", action="store_true",
                   help="cuda: allow TF32 in f32 matmuls (default off), like bench_moe --tf32")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (and OMP/OpenBLAS threads) (default 2)")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny shapes (bench_moe --quick's), for a smoke test")
    p.add_argument("--blas", default="openmp", choices=["openmp", "system"],
                   help="cpu: openmp = OpenBLAS's OpenMP build (moegrad's BLAS; default); system: the alternatives' "
                        "choice. Ignored on cuda (system)")
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
    if args.blas == "openmp" and args.device == "cpu":
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
                   "--profile-rows", str(args.profile_rows), "--device", args.device]
            cmd += ["--quick"] * args.quick + ["--profile"] * args.profile + ["--tf32"] * args.tf32
            r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
            sys.stdout.write(r.stdout)
            sys.stdout.flush()
            if r.returncode != 0:
                print(f"torch_moe_bench: {w} {m} failed (exit {r.returncode})", file=sys.stderr)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
