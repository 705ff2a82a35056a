#!/usr/bin/env python3
"""`moegrad train --tensorboard DIR` read back by TensorBoard's own reader (EventAccumulator):
every scalar equals the --metrics record of the same step (float32 rounding), each MoE layer's
expert-load histogram holds tokens_per_expert, and the expert-load heatmap at each eval is a
valid PNG of the documented size. Runs a regression task (one MoE layer) and a sequence task
(two layers, few experts kept per step so tokens are dropped), and a run stopped and resumed
(two event files read as one).

Needs the venv of scripts/tensorboard-env; without it the test is skipped (exit 77).
usage: check_tensorboard.py MOEGRAD_BIN VENV_PYTHON WORK_DIR
"""
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import zlib

binary, venv_python, work = (os.path.abspath(a) for a in sys.argv[1:4])
if os.path.realpath(sys.prefix) != os.path.realpath(os.path.dirname(os.path.dirname(venv_python))):
    if not os.access(venv_python, os.X_OK):
        print(f"SKIP: no TensorBoard venv at {venv_python}: run scripts/tensorboard-env to create it")
        sys.exit(77)
    os.execv(venv_python, [venv_python, os.path.abspath(__file__), *sys.argv[1:]])

from tensorboard.backend.event_processing import event_accumulator as ea  # noqa: E402

CELL_H, CELL_W, MAX_COLUMNS = 8, 4, 256  # train/tensorboard.h


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def png_size(data):
    """Checks the container (signature, chunk CRCs, IDAT inflating to the rows) -> (w, h)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, chunks, idat = 8, [], b""
    while at < len(data):
        n, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + n]
        (crc,) = struct.unpack(">I", data[at + 8 + n:at + 12 + n])
        assert crc == zlib.crc32(kind + body), f"bad CRC in chunk {kind}"
        chunks.append(kind)
        if kind == b"IDAT":
            idat += body
        if kind == b"IHDR":
            w, h, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 2), "expected 8-bit RGB"
        at += 12 + n
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", chunks
    assert len(zlib.decompress(idat)) == h * (1 + 3 * w), "IDAT does not hold h rows of w pixels"
    return w, h


def run(name, extra, starts=(0,)):
    """Runs `moegrad train` once per entry of starts (the step each run starts from: a resumed
    run starts a new event file, and its heatmaps cover the steps it logged itself)."""
    folder = os.path.join(work, name)
    os.makedirs(folder)
    metrics, tb = os.path.join(folder, "m.jsonl"), os.path.join(folder, "tb")
    argv = [binary, "train", "--metrics", metrics, "--tensorboard", tb, "--no-progress", *extra]
    for k, start in enumerate(starts):
        stop = ["--stop-at", str(starts[k + 1])] if k + 1 < len(starts) else []
        p = subprocess.run(argv + stop, cwd=folder, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{' '.join(argv + stop)} failed ({p.returncode}):\n{p.stderr}")
        assert (start == 0) == ("resumed from" not in p.stderr + p.stdout), f"run {k} should start at step {start}"
    records = [json.loads(line) for line in open(metrics)]
    files = os.listdir(tb)
    assert len(files) == len(starts), files
    for name_ in files:
        assert name_.startswith("events.out.tfevents.") and name_.endswith(".moegrad"), name_
        with open(os.path.join(tb, name_), "rb") as f:
            assert b"brain.Event:2" in f.read(64), f"{name_}: the first record is not file_version brain.Event:2"

    acc = ea.EventAccumulator(tb, size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.IMAGES: 0,
                                                 ea.COMPRESSED_HISTOGRAMS: 0, ea.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    steps = [r["step"] for r in records]
    # every number of every record, layers included, as the scalar of the same name and step
    expected = {}
    for r in records:
        for k, v in r.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                expected.setdefault(k, {})[r["step"]] = v
        for i, layer in enumerate(r.get("layers", [])):
            for k, v in layer.items():
                if isinstance(v, (int, float)):
                    expected.setdefault(f"moe/layer{i}/{k}", {})[r["step"]] = v
    for key in ("loss", "aux_loss", "balance_loss", "router_z_loss", "lr", "grad_norm", "eval_loss",
                "tokens_per_s", "moe/layer0/dropped_fraction"):
        assert key in expected, f"the metrics lack {key}"
    assert sorted(tags["scalars"]) == sorted(expected), (sorted(tags["scalars"]), sorted(expected))
    for tag, by_step in expected.items():
        got = {e.step: e.value for e in acc.Scalars(tag)}
        assert sorted(got) == sorted(by_step), f"{tag}: steps {sorted(got)} != {sorted(by_step)}"
        for s, v in by_step.items():
            assert got[s] == f32(v) or (math.isnan(got[s]) and math.isnan(v)), f"{tag} at step {s}: {got[s]} != {v}"
    layers = len(records[0]["layers"])
    # expert load: bucket e holds expert e's tokens
    for i in range(layers):
        tag = f"moe/layer{i}/expert_load"
        assert tag in tags["histograms"], tags["histograms"]
        got = {e.step: e.histogram_value for e in acc.Histograms(tag)}
        assert sorted(got) == steps
        for r in records:
            h, load = got[r["step"]], r["layers"][i]["tokens_per_expert"]
            assert list(h.bucket) == [float(n) for n in load], (r["step"], list(h.bucket), load)
            assert list(h.bucket_limit) == [float(e + 1) for e in range(len(load))]
            assert h.num == sum(load)
    # the heatmap at each eval: experts x logged steps so far
    evals = [r["step"] for r in records if "eval_loss" in r]
    assert evals, "no evaluation in the run"
    for i in range(layers):
        tag = f"moe/layer{i}/expert_load_heatmap"
        assert tag in tags["images"], tags["images"]
        images = acc.Images(tag)
        assert [im.step for im in images] == evals
        experts = len(records[0]["layers"][i]["tokens_per_expert"])
        for im in images:
            start = max(s for s in starts if s < im.step)
            columns = min(MAX_COLUMNS, sum(1 for s in steps if start < s <= im.step))
            want = (columns * CELL_W, experts * CELL_H)
            assert (im.width, im.height) == want, (im.width, im.height, want)
            assert png_size(im.encoded_image_string) == want
    dropped = max(r["layers"][i]["dropped_fraction"] for r in records for i in range(layers))
    print(f"{name}: {len(records)} records, {len(expected)} scalar tags, {layers} layer(s), "
          f"{len(evals)} heatmap(s) per layer, max dropped fraction {dropped:.3f}: all equal")
    return dropped


shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
run("regression", ["--steps", "30", "--log-every", "4", "--eval-every", "10", "--eval-batches", "1"])
dropped = run("sequence", ["--task", "sequence", "--layers", "2", "--steps", "12", "--log-every", "3",
                           "--eval-every", "6", "--eval-batches", "1", "--capacity-factor", "0.5"])
assert dropped > 0, "the sequence run dropped no tokens: the dropped-fraction scalars were never non-zero"
# stopped at step 12 and resumed: two event files that TensorBoard joins into one series
run("resumed", ["--steps", "24", "--log-every", "4", "--eval-every", "8", "--eval-batches", "1",
                "--ckpt-dir", "ckpt"], starts=(0, 12))
print("tensorboard: every scalar, histogram and heatmap matches the metrics")
