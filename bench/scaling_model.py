#!/usr/bin/env python3
"""An alpha-beta cost model of one training step of moegrad's expert-parallel MoE layers
(issue 14; docs/scaling.md explains the equations, the constants and their sources).

Per MoE layer and micro-batch: route (gate GEMM), dispatch, all-to-all of the rows to the ranks
that own their experts, the experts' GEMMs, all-to-all back, combine; the backward mirrors it
(two more all-to-alls, twice the GEMM FLOPs). Once per optimizer step the gradients are
all-reduced: each expert's over its W/P replicas, the replicated parameters (gates, ...) over W.

  scaling_model.py                       the GPU table at W = 8, 64, 512 (H200-class constants)
  scaling_model.py --measured FILE       also fit this machine's exchange and GEMM fraction to
                                         bench_dist's JSON lines and compare each line
  scaling_model.py --check               the model's internal consistency (a CTest test)

Python 3 standard library only. Exit status: 0 ok, 1 a --check failed, 2 bad usage or input.
"""
import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, replace

PROG = "scaling_model.py"
HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(HERE, "scaling_sample.jsonl")


class BadInput(Exception):
    """One line for the user: what was wrong, naming the flag or file and the value."""


# ---------------------------------------------------------------------------------------------
# The workload and the machine


@dataclass(frozen=True)
class Workload:
    model: str = "st_moe"          # st_moe: GEGLU w_in [2h, d], w_out [d, h]; lucidrains: w1 [d, h], w2 [h, d]
    tokens: int = 8192             # tokens per GPU per micro-batch
    dim: int = 4096
    hidden: int = 14336
    experts: int = 64
    top_k: int = 2
    capacity_factor: float = 2.5   # moegrad's rule: int(seq_len * cf / E) rows per (sequence, expert); 0: dropless
    seq_len: int = 2048            # the routing group (one sequence)
    layers: int = 32               # MoE layers per step
    elem_bytes: int = 2            # activations and exchanged rows (bf16)
    grad_bytes: int = 2            # gradients as all-reduced
    grad_accum: int = 1            # micro-batches per optimizer step (one all-reduce per step)
    replicated_params: int = 0     # per layer, besides the gate (d x E): e.g. attention 4 d^2

    def matrices(self):
        return 3 if self.model == "st_moe" else 2  # GEGLU's w_in is [2h, d]

    def rows(self):
        """Rows each GPU sends to the experts per layer: the fixed capacity buffers (capacity mode:
        E x groups x capacity, padded; the GPU layout), or every routed choice (dropless)."""
        if self.capacity_factor <= 0:
            return self.tokens * self.top_k
        groups = max(1, self.tokens // self.seq_len)
        group = min(self.tokens, self.seq_len)
        capacity = min(group, int(group * self.capacity_factor / self.experts))
        return self.experts * groups * capacity

    def expert_flops_fwd(self, rows=None):
        return 2.0 * (self.rows() if rows is None else rows) * self.dim * self.hidden * self.matrices()

    def expert_params(self):
        biases = 2 * self.hidden + self.dim if self.model == "st_moe" else 0
        return self.matrices() * self.dim * self.hidden + biases

    def replicated_per_layer(self):
        return self.dim * self.experts + self.replicated_params


@dataclass(frozen=True)
class Machine:
    name: str = "H200 SXM (DGX H200 / HGX H200 node: 8 GPUs, NVLink 4 + NVSwitch, 8x NDR 400 Gb/s)"
    gemm_tflops: float = 989.0     # dense BF16 tensor-core peak per GPU (datasheet: 1979 with sparsity)
    gemm_fraction: float = 0.6     # achieved fraction on the grouped expert GEMMs (an assumption)
    hbm_gbs: float = 4800.0        # HBM3e per GPU
    nvlink_gbs: float = 450.0      # NVLink 4 per GPU per direction (900 GB/s bidirectional)
    nvlink_alpha_us: float = 3.0   # per message inside a node
    ib_gbs: float = 50.0           # one NDR 400 Gb/s port per GPU, per direction
    ib_alpha_us: float = 6.0       # per message between nodes
    gpus_per_node: int = 8
    bucket_mb: float = 256.0       # gradient all-reduce bucket

    def gemm_rate(self):  # FLOP per ms
        return self.gemm_tflops * 1e12 * self.gemm_fraction / 1e3


def ms(nbytes, gbs):
    return nbytes / (gbs * 1e9) * 1e3


# ---------------------------------------------------------------------------------------------
# Collectives (Thakur, Rabenseifner and Gropp 2005: pairwise-exchange all-to-all, ring all-reduce)


def spans_nodes(first, stride, count, gpn):
    """Whether ranks first, first + stride, ... (count of them) sit on more than one node."""
    return count > 1 and (first + stride * (count - 1)) // gpn != first // gpn


def alltoall(m, nbytes, p):
    """One all-to-all of an EP group of p consecutive ranks, each sending nbytes in all (1/p of it to
    each member, itself included: balanced routing). Peers on the same node are reached over NVLink,
    the others over InfiniBand, both at once; each peer message pays its link's latency.
    Returns (ms, bytes over NVLink, bytes over InfiniBand) per GPU and direction."""
    if p <= 1 or nbytes <= 0:
        return 0.0, 0.0, 0.0
    local = min(p, m.gpus_per_node)
    intra = nbytes * (local - 1) / p
    inter = nbytes * (p - local) / p
    latency = (local - 1) * m.nvlink_alpha_us + (p - local) * m.ib_alpha_us
    return latency / 1e3 + max(ms(intra, m.nvlink_gbs), ms(inter, m.ib_gbs)), intra, inter


def ring_allreduce(nbytes, p, alpha_us, gbs):
    """2(p-1) alpha + 2 (p-1)/p n / B (NCCL's all-reduce bus bandwidth factor, nccl-tests)."""
    if p <= 1:
        return 0.0
    return 2 * (p - 1) * alpha_us / 1e3 + ms(2.0 * (p - 1) / p * nbytes, gbs)


def tree_allreduce(nbytes, p, alpha_us, gbs):
    """A pipelined tree (reduce up, broadcast down): 2 ceil(log2 p) alpha + 2 n / B."""
    if p <= 1:
        return 0.0
    return 2 * math.ceil(math.log2(p)) * alpha_us / 1e3 + ms(2.0 * nbytes, gbs)


def allreduce(m, nbytes, p, crosses_nodes):
    """All-reduce of nbytes over p GPUs in buckets of m.bucket_mb, each bucket by the cheaper of
    ring and tree (NCCL picks by size); InfiniBand is the bottleneck once the group spans nodes."""
    if p <= 1 or nbytes <= 0:
        return 0.0
    alpha, gbs = (m.ib_alpha_us, m.ib_gbs) if crosses_nodes else (m.nvlink_alpha_us, m.nvlink_gbs)
    bucket = m.bucket_mb * 2**20
    full, rest = divmod(nbytes, bucket)
    cost = lambda n: min(ring_allreduce(n, p, alpha, gbs), tree_allreduce(n, p, alpha, gbs))
    return full * cost(bucket) + (cost(rest) if rest else 0.0)


def pipelined(a2a_chunk_ms, gemm_ms, chunks):
    """a2a -> GEMM -> a2a on `chunks` slices of the rows (Tutel's pipelining): both all-to-alls use
    the network, the GEMMs the SMs; a 3-stage pipeline whose bottleneck per chunk is max(network,
    GEMM). chunks = 1 is the serial 2 a2a + GEMM."""
    net, gemm = 2 * a2a_chunk_ms, gemm_ms / chunks
    return net + gemm + (chunks - 1) * max(net, gemm)


# ---------------------------------------------------------------------------------------------
# One step


def step(w, m, world, ep, chunks=1, overlap_reduce=False):
    """Times in ms of one optimizer step (grad_accum micro-batches) on each GPU."""
    gpn, L, A = m.gpus_per_node, w.layers, w.grad_accum
    rows = w.rows()
    row_bytes = rows * w.dim * w.elem_bytes
    a2a, intra, inter = alltoall(m, row_bytes, ep)
    a2a_chunk = alltoall(m, row_bytes / chunks, ep)[0]
    g_fwd = w.expert_flops_fwd() / m.gemm_rate()
    g_bwd = 2 * g_fwd
    # route (gate GEMM, 3x for a step) and the memory-bound passes at HBM bandwidth: dispatch reads
    # T and writes R rows, combine the reverse; the activation reads and writes the hidden rows.
    gate = 2.0 * w.tokens * w.dim * w.experts / m.gemm_rate()
    act = rows * w.hidden * (3 if w.model == "st_moe" else 2) * w.elem_bytes
    traffic = ms(2 * (w.tokens + rows) * w.dim * w.elem_bytes + act, m.hbm_gbs)
    other_fwd, other_bwd = gate + traffic, 2 * gate + 2 * traffic
    layer_fwd = other_fwd + pipelined(a2a_chunk, g_fwd, chunks)
    layer_bwd = other_bwd + pipelined(a2a_chunk, g_bwd, chunks)
    net_bwd = 2 * chunks * a2a_chunk  # network busy time in one layer's backward

    replicas = world // ep
    expert_bytes = w.experts // ep * w.expert_params() * w.grad_bytes
    ar_expert = allreduce(m, expert_bytes, replicas, spans_nodes(0, ep, replicas, gpn))
    ar_repl = allreduce(m, w.replicated_per_layer() * w.grad_bytes, world, spans_nodes(0, 1, world, gpn))
    ar_layer = ar_expert + ar_repl

    compute = A * L * (g_fwd + g_bwd + other_fwd + other_bwd)
    serial_a2a = A * L * 4 * a2a
    body = A * L * (layer_fwd + layer_bwd)
    if overlap_reduce:
        # Each layer's gradients are reduced while the backward of the layers below runs, in the
        # network's idle time (the GEMMs, not the all-to-alls); whatever is left is exposed.
        pending = 0.0
        for _ in range(L):
            pending = max(0.0, pending - (layer_bwd - net_bwd)) + ar_layer
        exposed_ar = pending
    else:
        exposed_ar = L * ar_layer
    total = body + exposed_ar
    return {
        "rows": rows, "a2a_ms": a2a, "a2a_intra_bytes": intra, "a2a_inter_bytes": inter,
        "gemm": A * L * (g_fwd + g_bwd), "other": A * L * (other_fwd + other_bwd),
        "a2a": serial_a2a, "allreduce": L * ar_layer, "compute": compute,
        "total": total, "exposed_comm": total - compute,
        "expert_params_per_gpu": L * (w.experts // ep) * w.expert_params(),
    }


def best_chunks(w, m, world, ep, overlap_reduce):
    """Tutel picks its pipelining degree among 1, 2, 4, 8 by measuring; the model takes the best."""
    return min(((step(w, m, world, ep, c, overlap_reduce)["total"], c) for c in (1, 2, 4, 8)))[1]


def layouts(w, worlds, eps):
    """(W, P) pairs: each P in eps ('max' = min(W, E)) that divides W and E."""
    out = []
    for world in worlds:
        seen = set()
        for e in eps:
            p = min(world, w.experts) if e == "max" else int(e)
            if p in seen or p > world or world % p or w.experts % p:
                continue
            seen.add(p)
            out.append((world, p))
    return out


def crossover(w, m, eps_value, overlapped, limit=4096):
    """The smallest W (8, 16, ... limit) at which communication time exceeds compute time."""
    world = m.gpus_per_node
    while world <= limit:
        lay = layouts(w, [world], [eps_value])
        if lay:
            p = lay[0][1]
            if overlapped:
                s = step(w, m, world, p, best_chunks(w, m, world, p, True), True)
                comm = s["exposed_comm"]
            else:
                s = step(w, m, world, p)
                comm = s["a2a"] + s["allreduce"]
            if comm > s["compute"]:
                return world
        world *= 2
    return None


# ---------------------------------------------------------------------------------------------
# Printing


def fmt_bytes(n):
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def print_gpu_table(w, m, worlds, eps, out):
    gf = w.expert_flops_fwd()
    print(f"Workload: {w.model}, dim {w.dim}, hidden {w.hidden}, {w.experts} experts, top-{w.top_k}, "
          f"{w.tokens} tokens per GPU, {w.layers} MoE layers, {w.elem_bytes}-byte rows, "
          f"{w.grad_bytes}-byte gradients, {w.grad_accum} micro-batch(es) per step", file=out)
    cap = "dropless" if w.capacity_factor <= 0 else f"capacity factor {w.capacity_factor:g} per {w.seq_len}-token sequence"
    print(f"Rows per GPU per layer: {w.rows()} ({cap}); expert GEMMs {gf / 1e12:.2f} TFLOP forward, "
          f"{3 * gf / 1e12:.2f} per layer-step; all-to-all {fmt_bytes(w.rows() * w.dim * w.elem_bytes)} "
          f"per GPU each way", file=out)
    print(f"Machine: {m.name}", file=out)
    print(f"  GEMM {m.gemm_tflops:g} TFLOP/s x {m.gemm_fraction:g}; HBM {m.hbm_gbs:g} GB/s; NVLink "
          f"{m.nvlink_gbs:g} GB/s, {m.nvlink_alpha_us:g} us; InfiniBand {m.ib_gbs:g} GB/s, {m.ib_alpha_us:g} us "
          f"(per GPU, per direction); {m.gpus_per_node} GPUs per node; buckets {m.bucket_mb:g} MiB", file=out)
    print("", file=out)
    head = ("| W | P | a2a path | expert GEMMs | route etc. | all-to-all | all-reduce | total | comm share "
            "| + reduce overlap | + a2a overlap (chunks) | exposed comm | expert params/GPU | expert state/GPU |")
    print(head, file=out)
    print("|" + "---|" * (head.count("|") - 1), file=out)
    for world, p in layouts(w, worlds, eps):
        s = step(w, m, world, p)
        r = step(w, m, world, p, 1, True)
        c = best_chunks(w, m, world, p, True)
        o = step(w, m, world, p, c, True)
        path = "none" if p == 1 else ("NVLink" if p <= m.gpus_per_node else "NVLink+IB")
        comm = s["a2a"] + s["allreduce"]
        print(f"| {world} | {p} | {path} | {s['gemm']:.1f} | {s['other']:.1f} | {s['a2a']:.1f} | "
              f"{s['allreduce']:.1f} | {s['total']:.1f} | {100 * comm / s['total']:.0f}% | {r['total']:.1f} | "
              f"{o['total']:.1f} ({c}) | {100 * o['exposed_comm'] / o['total']:.0f}% | "
              f"{o['expert_params_per_gpu'] / 1e9:.1f} G | {16 * o['expert_params_per_gpu'] / 1e9:.0f} GB |", file=out)
    print("", file=out)
    print("Times in ms per step on each GPU. comm share = (all-to-all + all-reduce) / total, nothing "
          "overlapped; exposed comm = the total's excess over compute with both overlaps. expert state = the "
          "expert weights, gradients and Adam state of mixed-precision training (2 + 2 + 12 bytes per "
          "parameter), to compare with the GPU's memory.", file=out)
    for e in eps:
        name = "P = min(W, E)" if e == "max" else f"P = {e}"
        a, b = crossover(w, m, e, False), crossover(w, m, e, True)
        say = lambda x: f"W = {x}" if x else "not up to W = 4096"
        print(f"Communication exceeds compute ({name}): serial {say(a)}; overlapped {say(b)}", file=out)


# ---------------------------------------------------------------------------------------------
# Measured runs (bench_dist's JSON lines)

REQUIRED = ("world", "threads", "tokens_per_rank", "dim", "hidden", "experts", "top_k", "step_ms",
            "route_ms", "exchange_ms", "experts_ms", "combine_ms", "reduce_ms", "exchange_bytes",
            "reduce_bytes", "gemm_gflops")


def load_measured(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise BadInput(f"--measured {path}: cannot read it ({e.strerror})")
    runs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInput(f"--measured {path} line {n}: not JSON ({e.msg})")
        if not isinstance(r, dict):
            raise BadInput(f"--measured {path} line {n}: not a JSON object")
        for k in REQUIRED:
            if k not in r:
                raise BadInput(f"--measured {path} line {n}: missing field \"{k}\"")
            v = r[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v):
                raise BadInput(f"--measured {path} line {n}: field \"{k}\" must be a number >= 0, got {v!r}")
        if r["world"] < 1 or r["world"] != int(r["world"]):
            raise BadInput(f"--measured {path} line {n}: \"world\" must be a whole number >= 1, got {r['world']!r}")
        if r.get("model", "st_moe") not in ("st_moe", "lucidrains"):
            raise BadInput(f"--measured {path} line {n}: \"model\" must be st_moe or lucidrains, got {r['model']!r}")
        r["_line"] = n
        runs.append(r)
    if not runs:
        raise BadInput(f"--measured {path}: no runs in it")
    return runs


def ep_of(r):
    return int(r.get("expert_parallel", r["world"]))


def messages(r):
    """Peer messages of a step's exchanges: 4 all-to-alls per layer, P - 1 peers each."""
    return 4 * int(r.get("layers", 1)) * (ep_of(r) - 1)


def step_flops(r):
    """The step's expert GEMM FLOPs on this rank: 3x forward over the rows its experts ran."""
    w = Workload(model=r.get("model", "st_moe"), dim=int(r["dim"]), hidden=int(r["hidden"]))
    rows = r.get("expert_rows", r.get("rows", r["tokens_per_rank"] * r["top_k"]))
    return 3 * int(r.get("layers", 1)) * w.expert_flops_fwd(rows)


def model_exchange_bytes(r):
    """Bytes a rank sends to other ranks in a step's 4 exchanges per layer, routing balanced."""
    p = ep_of(r)
    return 4 * int(r.get("layers", 1)) * r["rows"] * r["dim"] * r.get("elem_bytes", 4) * (p - 1) / p


def solve2(xs1, xs2, ys):
    """Least squares y = a x1 + b x2 (no intercept); None when the two columns are dependent."""
    s11 = sum(x * x for x in xs1)
    s22 = sum(x * x for x in xs2)
    s12 = sum(x * y for x, y in zip(xs1, xs2))
    s1y = sum(x * y for x, y in zip(xs1, ys))
    s2y = sum(x * y for x, y in zip(xs2, ys))
    det = s11 * s22 - s12 * s12
    if det <= 1e-12 * max(s11 * s22, 1e-300):
        return None
    return (s1y * s22 - s2y * s12) / det, (s2y * s11 - s1y * s12) / det


def fit(runs):
    """alpha (ms per peer message) and beta (ms per byte) of the exchange, and the GEMM fraction."""
    notes = []
    ex = [r for r in runs if r["world"] > 1 and r["exchange_bytes"] > 0]
    alpha = beta = None
    if len(ex) < 2:
        notes.append(f"too few runs with an exchange to fit alpha and beta ({len(ex)}; need 2 with different "
                     "byte and message counts): exchange and reduce are not predicted")
    else:
        ab = solve2([messages(r) for r in ex], [r["exchange_bytes"] for r in ex], [r["exchange_ms"] for r in ex])
        if ab is None or ab[0] < 0 or ab[1] <= 0:
            # dependent columns, or a negative latency: fit the bandwidth alone
            beta = sum(r["exchange_bytes"] * r["exchange_ms"] for r in ex) / sum(r["exchange_bytes"] ** 2 for r in ex)
            alpha = 0.0
            notes.append(f"alpha and beta cannot be separated by these {len(ex)} runs (same ratio of messages to "
                         "bytes, or a negative latency): beta fitted alone, alpha = 0")
        else:
            alpha, beta = ab
            if len(ex) == 2:
                notes.append("2 runs for 2 unknowns: an exact fit, no residual to judge it by")
    g = [r for r in runs if r["experts_ms"] > 0 and r["gemm_gflops"] > 0]
    fraction = None
    if g:
        xs = [step_flops(r) / (r["gemm_gflops"] * 1e9) * 1e3 for r in g]
        c = sum(x * r["experts_ms"] for x, r in zip(xs, g)) / sum(x * x for x in xs)
        fraction = 1.0 / c
    else:
        notes.append("no run has experts_ms and gemm_gflops > 0: the GEMM fraction is not fitted")
    return alpha, beta, fraction, notes


def predict(r, alpha, beta, fraction):
    """The model's phases for one measured run (route and combine are taken as measured)."""
    p = {"experts": step_flops(r) / (fraction * r["gemm_gflops"] * 1e9) * 1e3 if fraction else None}
    if beta is None or r["world"] <= 1:
        p["exchange"] = 0.0 if r["world"] <= 1 else None
        p["reduce"] = 0.0 if r["world"] <= 1 else None
    else:
        p["exchange"] = alpha * messages(r) + beta * r["exchange_bytes"]
        p["reduce"] = ring_allreduce(r["reduce_bytes"], int(r["world"]), alpha * 1e3, 1e-6 / beta)
    parts = [p["experts"], p["exchange"], p["reduce"]]
    p["step"] = None if None in parts else sum(parts) + r["route_ms"] + r["combine_ms"]
    return p


def print_measured(path, runs, out):
    alpha, beta, fraction, notes = fit(runs)
    sample = any(r.get("sample") for r in runs)
    print(f"Measured runs: {path} ({len(runs)} lines)", file=out)
    if sample:
        print("  SAMPLE DATA, NOT A MEASUREMENT: the lines say \"sample\": true (made up to exercise the fit)", file=out)
    for n in notes:
        print(f"  note: {n}", file=out)
    if beta is not None:
        print(f"  exchange fit: alpha {alpha * 1e3:.1f} us per peer message, beta {1e-6 / beta:.2f} GB/s", file=out)
    if fraction is not None:
        print(f"  expert GEMMs at {fraction:.2f} of the same-run GEMM rate (least squares over the runs)", file=out)
    print("", file=out)
    head = "| line | W x threads | tokens/rank | phase | measured ms | model ms | model/measured |"
    print(head, file=out)
    print("|" + "---|" * (head.count("|") - 1), file=out)
    show = lambda x: "-" if x is None else f"{x:.2f}"
    for r in runs:
        p = predict(r, alpha, beta, fraction)
        for phase in ("experts", "exchange", "reduce", "step"):
            got, want = p[phase], r[f"{phase}_ms"]
            ratio = "-" if got is None or want <= 0 else f"{got / want:.2f}"
            print(f"| {r['_line']} | {int(r['world'])} x {int(r['threads'])} | {int(r['tokens_per_rank'])} | {phase} "
                  f"| {want:.2f} | {show(got)} | {ratio} |", file=out)
    print("", file=out)
    with_rows = [r for r in runs if "rows" in r and r["world"] > 1]
    if with_rows:
        print("Exchange bytes per step, measured / model (4 x layers x rows x dim x bytes x (P-1)/P, balanced "
              "routing): " + ", ".join(f"line {r['_line']} {fmt_bytes(r['exchange_bytes'])} / "
                                       f"{fmt_bytes(model_exchange_bytes(r))}" for r in with_rows), file=out)
    print("The model's step = route + combine (as measured) + experts (FLOPs / (fraction x gemm_gflops)) + "
          "exchange (alpha x messages + beta x bytes) + reduce (ring all-reduce with the same alpha, beta).", file=out)


# ---------------------------------------------------------------------------------------------
# --check: the model's internal consistency


def run_checks(out):
    failures, count = [], 0

    def check(cond, what):
        nonlocal count
        count += 1
        if not cond:
            failures.append(what)

    close = lambda a, b, tol=1e-9: abs(a - b) <= tol * max(1.0, abs(a), abs(b))
    m, w = Machine(), Workload()
    # all-to-all
    check(alltoall(m, 1e9, 1) == (0.0, 0.0, 0.0), "all-to-all at P = 1 is free")
    for p in (2, 8, 16, 64, 512):
        ts = [alltoall(m, n, p)[0] for n in (1e3, 1e6, 1e8, 1e9)]
        check(all(a < b for a, b in zip(ts, ts[1:])), f"all-to-all time grows with bytes (P = {p})")
        t, intra, inter = alltoall(m, 1e9, p)
        check(close(intra + inter, 1e9 * (p - 1) / p), f"all-to-all sends (P-1)/P of the rows away (P = {p})")
    t, intra, inter = alltoall(m, 1e9, 8)
    check(inter == 0 and close(t, 7 * m.nvlink_alpha_us / 1e3 + ms(1e9 * 7 / 8, m.nvlink_gbs)),
          "all-to-all inside a node: (P-1) alpha + (P-1)/P n / B over NVLink only")
    check(alltoall(m, 1e9, 16)[2] > 0 and alltoall(m, 1e9, 16)[0] > alltoall(m, 1e9, 8)[0],
          "all-to-all over P > 8 crosses InfiniBand and costs more")
    # all-reduce
    n = 64 * 2**20  # one bucket
    for p in (1, 2, 8, 64, 512):
        ring = 0.0 if p == 1 else 2 * (p - 1) * m.ib_alpha_us / 1e3 + ms(2.0 * (p - 1) / p * n, m.ib_gbs)
        check(close(ring_allreduce(n, p, m.ib_alpha_us, m.ib_gbs), ring), f"ring all-reduce = 2(W-1) alpha + 2(W-1)/W n / B (P = {p})")
        tree = 0.0 if p == 1 else min(ring, tree_allreduce(n, p, m.ib_alpha_us, m.ib_gbs))
        check(close(allreduce(m, n, p, True), tree), f"all-reduce = min(ring, tree) (P = {p})")
    for p in (2, 4, 8):  # few members: the ring's (W-1)/W bandwidth term wins
        check(close(allreduce(m, n, p, True), ring_allreduce(n, p, m.ib_alpha_us, m.ib_gbs)),
              f"a large all-reduce over few GPUs is the ring (P = {p})")
    check(allreduce(m, 2**10, 512, True) < ring_allreduce(2**10, 512, m.ib_alpha_us, m.ib_gbs) / 10,
          "a small all-reduce over 512 GPUs takes the tree's log2 latency")
    check(allreduce(replace(m, bucket_mb=1), 10 * 2**20, 8, False) > allreduce(m, 10 * 2**20, 8, False),
          "smaller buckets pay more latency")
    check(spans_nodes(0, 1, 8, 8) is False and spans_nodes(0, 1, 16, 8) and spans_nodes(0, 8, 2, 8)
          and not spans_nodes(0, 2, 4, 8), "node spans of rank groups")
    # pipelining
    check(close(pipelined(1.0, 5.0, 1), 7.0), "one chunk is the serial a2a + GEMM + a2a")
    for c in (2, 4, 8):
        check(pipelined(1.0 / c, 5.0, c) >= max(2.0, 5.0) - 1e-12, f"pipelined >= its bottleneck ({c} chunks)")
        check(pipelined(1.0 / c, 5.0, c) < 7.0, f"pipelining with free latency helps ({c} chunks)")
    # FLOPs and rows
    check(close(w.expert_flops_fwd(100), 6.0 * 100 * w.dim * w.hidden), "st_moe forward FLOPs = 6 R d h")
    check(close(replace(w, model="lucidrains").expert_flops_fwd(100), 4.0 * 100 * w.dim * w.hidden),
          "lucidrains forward FLOPs = 4 R d h")
    check(replace(w, capacity_factor=0).rows() == w.tokens * w.top_k, "dropless: every choice is a row")
    check(replace(w, capacity_factor=1.25, tokens=2048, seq_len=256, experts=8).rows() == 2560,
          "capacity rows as bench_moe's W1 (8 x 256 tokens, e8, cf 1.25: 2560)")
    # one step
    for world, p in ((8, 8), (64, 8), (64, 64), (512, 64), (512, 8)):
        s = step(w, m, world, p)
        check(close(s["total"], s["compute"] + s["a2a"] + s["allreduce"]), f"serial total = sum of parts (W {world}, P {p})")
        for c in (1, 2, 4, 8):
            o = step(w, m, world, p, c, True)
            check(o["total"] >= o["compute"] - 1e-9, f"overlap cannot beat compute (W {world}, P {p}, {c} chunks)")
        r = step(w, m, world, p, 1, True)
        check(r["total"] <= s["total"] + 1e-9, f"overlapping the reduce never costs (W {world}, P {p})")
        o = step(w, m, world, p, best_chunks(w, m, world, p, True), True)
        check(o["total"] <= r["total"] + 1e-9, f"the best pipelining never costs (W {world}, P {p})")
    s = step(w, m, 8, 8)
    check(s["allreduce"] < 1.0 and s["a2a_inter_bytes"] == 0, "W = P = 8: no expert replicas, no InfiniBand")
    check(step(w, m, 1, 1)["a2a"] == 0 and step(w, m, 1, 1)["allreduce"] == 0, "one GPU communicates nothing")
    prev = 0.0
    for world in (8, 16, 32, 64, 128, 256, 512):
        c = step(w, m, world, 8)
        check(c["a2a"] + c["allreduce"] >= prev - 1e-12, f"at fixed P communication grows with W ({world})")
        prev = c["a2a"] + c["allreduce"]
    one, two = step(w, m, 64, 8), step(replace(w, grad_accum=2), m, 64, 8)
    check(close(two["compute"], 2 * one["compute"]) and close(two["allreduce"], one["allreduce"]),
          "accumulation multiplies compute, not the all-reduce")
    # the fit recovers known constants from exact synthetic runs
    alpha, beta, frac = 0.04, 1 / 5e6, 0.8  # ms per message, ms per byte (5 GB/s)
    runs = []
    for world, tokens, d in ((2, 1024, 256), (4, 512, 256), (2, 1024, 1024), (4, 256, 1024)):
        r = {"world": world, "threads": 1, "tokens_per_rank": tokens, "dim": d, "hidden": 4 * d, "experts": 8,
             "top_k": 2, "gemm_gflops": 100.0, "route_ms": 1.0, "combine_ms": 1.0, "reduce_bytes": 8192}
        r["exchange_bytes"] = 4 * tokens * 2 * d * 4 * (world - 1) / world
        r["exchange_ms"] = alpha * messages(r) + beta * r["exchange_bytes"]
        r["experts_ms"] = step_flops(r) / (frac * 100e9) * 1e3
        runs.append(r)
    a, b, f, notes = fit(runs)
    check(close(a, alpha, 1e-6) and close(b, beta, 1e-6) and close(f, frac, 1e-9) and not notes,
          "the fit recovers alpha, beta and the GEMM fraction from exact runs")
    pr = predict(runs[0], a, b, f)
    check(close(pr["exchange"], runs[0]["exchange_ms"], 1e-6) and close(pr["experts"], runs[0]["experts_ms"], 1e-6),
          "the fitted model reproduces the runs it was fitted to")
    check(fit(runs[:1])[1] is None and "too few" in fit(runs[:1])[3][0], "one run: too few points, said so")
    check("exact fit" in fit(runs[:2])[3][0], "two runs: an exact fit, said so")
    same = [dict(runs[0]), dict(runs[0])]
    same[1]["exchange_bytes"] *= 2
    same[1]["exchange_ms"] *= 2
    same[1]["reduce_ms"] = 0
    check(fit([dict(r, reduce_ms=0) for r in same])[0] == 0.0, "dependent columns: beta alone, alpha = 0")
    # the sample file loads and is labelled
    sample = load_measured(SAMPLE)
    a, b, f, _ = fit(sample)
    check(all(r.get("sample") is True for r in sample), "every line of scaling_sample.jsonl says sample: true")
    check(a is not None and a >= 0 and b > 0 and 0 < f <= 1.5, "the sample file fits")
    check(all(abs(r["exchange_bytes"] - model_exchange_bytes(r)) < 1 for r in sample if r["world"] > 1),
          "the sample's exchange bytes are the model's rows x dim x bytes")
    print(f"scaling model: {count - len(failures)} of {count} checks passed", file=out)
    for what in failures:
        print(f"FAILED: {what}", file=out)
    return not failures


# ---------------------------------------------------------------------------------------------
# Command line


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the whole usage
        print(f"{PROG}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def positive(kind):
    what = "whole number" if kind is int else "number"

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} > 0, got {text!r}")
        if not v > 0 or (kind is float and not math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"expected a {what} > 0, got {text!r}")
        return v
    return parse


def non_negative(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def int_list(text):
    try:
        v = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}")
    if any(x < 1 for x in v):
        raise argparse.ArgumentTypeError(f"expected whole numbers >= 1, got {text!r}")
    return v


def ep_list(text):
    v = text.split(",")
    if any(x != "max" and not (x.isdigit() and int(x) >= 1) for x in v):
        raise argparse.ArgumentTypeError(f"expected whole numbers >= 1 or 'max', got {text!r}")
    return v


def parse_args(argv):
    d, dm = Workload(), Machine()
    ap = Parser(prog=PROG, description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Defaults: the GPU workload of docs/scaling.md on H200-class constants.")
    ap.add_argument("--check", action="store_true", help="run the model's consistency checks and exit")
    ap.add_argument("--measured", metavar="FILE", help="bench_dist's JSON lines: fit alpha, beta, GEMM fraction")
    ap.add_argument("--no-gpu-table", action="store_true", help="print only the --measured part")
    g = ap.add_argument_group("workload")
    g.add_argument("--model", choices=("st_moe", "lucidrains"), default=d.model)
    g.add_argument("--tokens", type=positive(int), default=d.tokens, help="tokens per GPU per micro-batch")
    g.add_argument("--dim", type=positive(int), default=d.dim)
    g.add_argument("--hidden", type=positive(int), default=d.hidden)
    g.add_argument("--experts", type=positive(int), default=d.experts)
    g.add_argument("--top-k", type=positive(int), default=d.top_k)
    g.add_argument("--capacity-factor", type=non_negative, default=d.capacity_factor,
                   help="int(seq_len * cf / E) rows per (sequence, expert), padded; 0: dropless")
    g.add_argument("--seq-len", type=positive(int), default=d.seq_len)
    g.add_argument("--layers", type=positive(int), default=d.layers)
    g.add_argument("--bytes", type=positive(int), default=d.elem_bytes, help="bytes per exchanged element")
    g.add_argument("--grad-bytes", type=positive(int), default=d.grad_bytes)
    g.add_argument("--grad-accum", type=positive(int), default=d.grad_accum)
    g.add_argument("--replicated-params", type=int, default=d.replicated_params,
                   help="replicated parameters per layer besides the gate")
    g = ap.add_argument_group("layout")
    g.add_argument("--world", type=int_list, default=[8, 64, 512], help="GPU counts (default 8,64,512)")
    g.add_argument("--expert-parallel", type=ep_list, default=["8", "max"],
                   help="expert-parallel degrees, 'max' = min(W, E) (default 8,max)")
    g.add_argument("--gpus-per-node", type=positive(int), default=dm.gpus_per_node)
    g = ap.add_argument_group("machine (per GPU)")
    g.add_argument("--gemm-tflops", type=positive(float), default=dm.gemm_tflops)
    g.add_argument("--gemm-fraction", type=positive(float), default=dm.gemm_fraction)
    g.add_argument("--hbm-gbs", type=positive(float), default=dm.hbm_gbs)
    g.add_argument("--nvlink-gbs", type=positive(float), default=dm.nvlink_gbs)
    g.add_argument("--nvlink-alpha-us", type=non_negative, default=dm.nvlink_alpha_us)
    g.add_argument("--ib-gbs", type=positive(float), default=dm.ib_gbs)
    g.add_argument("--ib-alpha-us", type=non_negative, default=dm.ib_alpha_us)
    g.add_argument("--bucket-mb", type=positive(float), default=dm.bucket_mb)
    a = ap.parse_args(argv)
    if a.replicated_params < 0:
        ap.error(f"argument --replicated-params: expected a whole number >= 0, got {a.replicated_params}")
    if a.gemm_fraction > 1:
        ap.error(f"argument --gemm-fraction: expected a fraction in (0, 1], got {a.gemm_fraction}")
    return a


def main(argv):
    a = parse_args(argv)
    out = sys.stdout
    if a.check:
        return 0 if run_checks(out) else 1
    w = Workload(a.model, a.tokens, a.dim, a.hidden, a.experts, a.top_k, a.capacity_factor, a.seq_len, a.layers,
                 a.bytes, a.grad_bytes, a.grad_accum, a.replicated_params)
    m = replace(Machine(), gemm_tflops=a.gemm_tflops, gemm_fraction=a.gemm_fraction, hbm_gbs=a.hbm_gbs,
                nvlink_gbs=a.nvlink_gbs, nvlink_alpha_us=a.nvlink_alpha_us, ib_gbs=a.ib_gbs,
                ib_alpha_us=a.ib_alpha_us, gpus_per_node=a.gpus_per_node, bucket_mb=a.bucket_mb)
    if w.top_k > w.experts:
        raise BadInput(f"--top-k {w.top_k} exceeds --experts {w.experts}")
    runs = load_measured(a.measured) if a.measured else None
    if not a.no_gpu_table:
        if not layouts(w, a.world, a.expert_parallel):
            raise BadInput(f"no layout to model: each --expert-parallel P must divide --world W and --experts "
                           f"{w.experts} (got --world {','.join(map(str, a.world))}, --expert-parallel "
                           f"{','.join(a.expert_parallel)})")
        print_gpu_table(w, m, a.world, a.expert_parallel, out)
    if a.measured:
        if not a.no_gpu_table:
            print("", file=out)
        print_measured(a.measured, runs, out)
    elif a.no_gpu_table:
        raise BadInput("--no-gpu-table needs --measured FILE")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BadInput as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        sys.exit(2)
