#!/usr/bin/env python3
"""scripts/plot-metrics end to end: trains a short st_moe run (2 MoE layers) and its dense
baseline with `moegrad train --metrics`, plots them, and checks that the PNG holds the data:
the series it reports plotting (--data-out) equal the metrics files' values, the image decodes
at the documented size, is not blank, every heatmap cell has the colour of its count, and every
loss point has its run's colour where it belongs. Then --layer, a dense first run, --help,
bad input (missing, empty, folder, non-JSON, no loss, bad flags: one line and exit 2), and the
README's plot-metrics section as written.

usage: check_plot_metrics.py MOEGRAD_BIN PLOT_METRICS_SCRIPT README.md WORK_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys

BIN, SCRIPT, README = (os.path.abspath(a) for a in sys.argv[1:4])
WORK = os.path.abspath(sys.argv[4])
PYTHON = "/usr/bin/python3"
SMALL = ["--dim", "16", "--hidden", "16", "--experts", "8", "--input-dim", "8", "--clusters", "8",
         "--batch-size", "8", "--seq-len", "8", "--steps", "30", "--warmup", "3", "--eval-every", "10",
         "--eval-batches", "1", "--log-every", "3", "--layers", "2", "--seed", "5", "--no-progress",
         "--resume", "none"]
failures = []

try:
    import numpy as np
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image
    from matplotlib import colormaps
    from matplotlib.colors import Normalize, to_rgb
except ImportError as e:
    print(f"check_plot_metrics: needs numpy and matplotlib (Debian: python3-matplotlib): {e}")
    sys.exit(1)


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def plot(*args):
    return subprocess.run([PYTHON, SCRIPT, *args], capture_output=True, text=True, timeout=120)


def train(model, metrics):
    r = subprocess.run([BIN, "train", "--model", model, "--metrics", metrics, *SMALL],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        print(f"moegrad train --model {model} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        sys.exit(1)


def read_metrics(path):
    """The metrics file as the plot should show it, read here independently of the script."""
    recs = [json.loads(line) for line in open(path) if line.strip()]
    out = {"train": ([r["step"] for r in recs if "loss" in r], [r["loss"] for r in recs if "loss" in r]),
           "eval": ([r["step"] for r in recs if "eval_loss" in r], [r["eval_loss"] for r in recs if "eval_loss" in r]),
           "layers": []}
    for i in range(max(len(r.get("layers", [])) for r in recs)):
        have = [r for r in recs if len(r.get("layers", [])) > i]
        out["layers"].append(([r["step"] for r in have], [r["layers"][i]["tokens_per_expert"] for r in have]))
    return out


def to_pixel(panel, x, y):
    """Data (x, y) to (column, row) in the image, from the panel's box and limits."""
    x0, top, x1, bottom = panel["box"]
    (a, b), (c, d) = panel["xlim"], panel["ylim"]
    if panel.get("yscale") == "log":
        y, c, d = np.log10(y), np.log10(c), np.log10(d)
    return x0 + (x - a) / (b - a) * (x1 - x0), bottom - (y - c) / (d - c) * (bottom - top)


def check_heatmap(img, h, metrics_layer, name):
    steps, counts = metrics_layer
    check(h["steps"] == steps, f"{name}: heatmap steps {h['steps'][:5]}... differ from the file's {steps[:5]}...")
    check(h["tokens_per_expert"] == counts, f"{name}: heatmap counts differ from the file's")
    check(h["vmin"] == 0 and h["vmax"] == max(max(c) for c in counts),
          f"{name}: colour range [{h['vmin']}, {h['vmax']}], expected [0, max count]")
    cmap, norm = colormaps[h["cmap"]], Normalize(h["vmin"], h["vmax"])
    panel = dict(h, yscale="linear")
    bad = 0
    for j, step in enumerate(steps):
        for e, count in enumerate(counts[j]):
            col, row = to_pixel(panel, step, e)
            got = img[int(round(row)), int(round(col)), :3]
            want = np.array(cmap(norm(count))[:3])
            if np.abs(got - want).max() > 2.5 / 255:
                bad += 1
                if bad <= 3:
                    failures.append(f"{name}: cell (expert {e}, step {step}, count {count}) at pixel "
                                    f"({col:.0f}, {row:.0f}) is {np.round(got * 255)}, expected {np.round(want * 255)}")
    check(bad == 0, f"{name}: {bad} of {len(steps) * len(counts[0])} heatmap cells have the wrong colour")
    x0, top, x1, bottom = (int(v) for v in h["box"])
    region = img[top + 2:bottom - 2, x0 + 2:x1 - 2, :3]
    colours = len(np.unique((region * 255).round().astype(np.int32).reshape(-1, 3), axis=0))
    distinct = len({c for row in counts for c in row})
    check(colours >= min(8, distinct), f"{name}: only {colours} distinct colours in the heatmap ({distinct} counts)")


def check_loss_points(img, runs, panel, key, name):
    """Each plotted point shows its run's colour within 3 pixels (unless another run's is close)."""
    points = []
    for k, run in enumerate(runs):
        steps, values = run[key]["step"], run[key]["loss"]
        points += [(k, to_pixel(panel, s, v), np.array(to_rgb(run["color"]))) for s, v in zip(steps, values)]
    checked = 0
    for k, (col, row), rgb in points:
        if any(k2 != k and abs(c2 - col) < 8 and abs(r2 - row) < 8 for k2, (c2, r2), _ in points):
            continue
        window = img[int(row) - 3:int(row) + 4, int(col) - 3:int(col) + 4, :3]
        near = np.abs(window - rgb).max(axis=2) < 3 / 255
        checked += 1
        check(near.any(), f"{name}: run {k}'s {key} point at pixel ({col:.0f}, {row:.0f}) is not drawn in {runs[k]['color']}")
    check(checked >= len(points) // 2, f"{name}: only {checked} of {len(points)} points far enough apart to check")


def check_bad(args, expect, what):
    out = os.path.join(WORK, "bad.png")
    if os.path.exists(out):
        os.remove(out)
    r = plot(*args, "-o", out)
    lines = r.stderr.strip().splitlines()
    ok = check(r.returncode == 2, f"{what}: exit {r.returncode}, expected 2 ({r.stderr.strip()[:300]})")
    ok &= check(len(lines) == 1 and lines[0].startswith("plot-metrics: ") and expect in lines[0],
                f"{what}: expected one line 'plot-metrics: ...{expect}...', got {r.stderr.strip()[:300]!r}")
    ok &= check("Traceback" not in r.stderr, f"{what}: a traceback")
    ok &= check(not os.path.exists(out), f"{what}: wrote a PNG anyway")
    if ok:
        print(f"ok  bad input: {what}: {lines[0]}")


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    moe, dense = os.path.join(WORK, "moe.jsonl"), os.path.join(WORK, "dense.jsonl")
    train("st_moe", moe)
    train("dense", dense)
    want = {"moe": read_metrics(moe), "dense": read_metrics(dense)}
    check(len(want["moe"]["layers"]) == 2 and not want["dense"]["layers"], "expected 2 MoE layers and a dense run without")
    check(len(want["moe"]["eval"][0]) == 3, f"expected 3 evaluations, got {want['moe']['eval'][0]}")

    # MoE and dense side by side; the heatmap of the MoE run's two layers.
    png, data = os.path.join(WORK, "report.png"), os.path.join(WORK, "report.json")
    r = plot(moe, dense, "--label", "MoE", "--label", "dense", "-o", png, "--data-out", data, "--title", "check")
    if not check(r.returncode == 0 and r.stdout.strip() == png, f"plot-metrics failed ({r.returncode}): {r.stdout}{r.stderr}"):
        return
    d = json.load(open(data))
    for run, label, path in zip(d["runs"], ["MoE", "dense"], [moe, dense]):
        w = want["moe" if label == "MoE" else "dense"]
        check(run["label"] == label and run["file"] == path, f"run {label}: label/file {run['label']}, {run['file']}")
        for key in ("train", "eval"):
            check((run[key]["step"], run[key]["loss"]) == (w[key][0], w[key][1]),
                  f"run {label}: plotted {key} series differs from the metrics file")
    check([h["layer"] for h in d["heatmaps"]] == [0, 1], f"heatmap layers {[h['layer'] for h in d['heatmaps']]}, expected [0, 1]")
    img = matplotlib.image.imread(png)
    check(img.shape[:2] == (400 + 2 * 350, 1200), f"PNG is {img.shape[1]}x{img.shape[0]}, expected 1200x1100")
    check((d["figure"]["width_px"], d["figure"]["height_px"]) == (img.shape[1], img.shape[0]), "data-out figure size differs from the PNG's")
    check(float(img[..., :3].std()) > 0.05, f"PNG looks blank (pixel std {img[..., :3].std():.4f})")
    for h in d["heatmaps"]:
        check_heatmap(img, h, want["moe"]["layers"][h["layer"]], f"layer {h['layer']}")
    for key in ("train", "eval"):
        check_loss_points(img, d["runs"], d["loss_panels"][key], key, f"{key} loss panel")
    print(f"ok  {png}: {img.shape[1]}x{img.shape[0]}, series equal to the metrics files, "
          f"{sum(len(h['steps']) * len(h['tokens_per_expert'][0]) for h in d['heatmaps'])} heatmap cells coloured by their counts")

    # --layer 1 only; default labels are the file names.
    r = plot(moe, "--layer", "1", "-o", png, "--data-out", data)
    d = json.load(open(data)) if r.returncode == 0 else {}
    if check(r.returncode == 0, f"--layer 1 failed: {r.stderr}"):
        img = matplotlib.image.imread(png)
        check(img.shape[:2] == (750, 1200), f"--layer 1: PNG is {img.shape[1]}x{img.shape[0]}, expected 1200x750")
        check([h["layer"] for h in d["heatmaps"]] == [1] and d["runs"][0]["label"] == "moe.jsonl",
              f"--layer 1: layers {[h['layer'] for h in d['heatmaps']]}, label {d['runs'][0]['label']}")
        check_heatmap(img, d["heatmaps"][0], want["moe"]["layers"][1], "--layer 1")

    # A dense first run has no expert load: the losses only, and a note.
    r = plot(dense, moe, "-o", png, "--data-out", data)
    if check(r.returncode == 0 and "no MoE layers" in r.stderr, f"dense first: {r.returncode} {r.stderr}"):
        img = matplotlib.image.imread(png)
        check(img.shape[:2] == (400, 1200) and json.load(open(data))["heatmaps"] == [],
              f"dense first: PNG {img.shape[1]}x{img.shape[0]}, expected 1200x400 without heatmaps")

    r = plot("--help")
    check(r.returncode == 0 and "usage:" in r.stdout and "--data-out" in r.stdout and "--layer" in r.stdout,
          f"--help: {r.returncode} {r.stdout[:200]}")

    # Bad input: one line, exit 2, no PNG.
    empty, blank, text, no_loss, array = (os.path.join(WORK, n) for n in
                                          ("empty.jsonl", "blank.jsonl", "text.jsonl", "noloss.jsonl", "array.jsonl"))
    open(empty, "w").close()
    open(blank, "w").write("\n  \n")
    open(text, "w").write(open(moe).readline() + "step 3 loss 0.5\n")
    open(no_loss, "w").write('{"step": 1, "lr": 0.1}\n{"step": 2, "lr": 0.2}\n')
    open(array, "w").write("[1, 2]\n")
    check_bad([os.path.join(WORK, "missing.jsonl")], "no such file", "missing file")
    check_bad([moe, os.path.join(WORK, "missing.jsonl")], "missing.jsonl': no such file", "second file missing")
    check_bad([empty], "empty file", "empty file")
    check_bad([blank], "empty file", "blank lines only")
    check_bad([WORK], "is a folder", "a folder")
    check_bad([text], "line 2: not JSON", "a line that is not JSON")
    check_bad([array], "line 1: not a JSON object", "a JSON array line")
    check_bad([no_loss], "no \"loss\"", "no loss in any line")
    check_bad([moe, dense, "--label", "a"], "--label given 1 times for 2 runs", "--label count")
    check_bad([moe, "--layer", "2"], "--layer 2: the first run", "--layer out of range")
    check_bad([dense, "--layer", "0"], "has no MoE layers", "--layer on a dense run")
    check_bad([moe, "--layer", "x"], "--layer", "--layer not an integer")
    check_bad([moe, "--colour", "red"], "unrecognized arguments: --colour", "unknown flag")
    r = plot(moe)
    check(r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "-o/--output" in r.stderr,
          f"no -o: {r.returncode} {r.stderr!r}")


def readme_section():
    """The README's plot-metrics commands as written, with the binary and script under test."""
    text = open(README).read()
    section = text[text.index("## Plotting runs: `scripts/plot-metrics`"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    if not check(len(blocks) == 1, f"the README's plot-metrics section has {len(blocks)} sh blocks, expected 1"):
        return
    script = blocks[0].replace("build/release/moegrad ", BIN + " ").replace("scripts/plot-metrics ", SCRIPT + " ")
    work = os.path.join(WORK, "readme")
    os.makedirs(work)
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, capture_output=True, text=True, timeout=600)
    if not check(r.returncode == 0, f"README commands failed ({r.returncode}): {r.stderr[-500:]}"):
        return
    png = os.path.join(work, "runs", "report.png")
    img = matplotlib.image.imread(png)
    check(img.shape[:2] == (750, 1200) and float(img[..., :3].std()) > 0.05,
          f"README report.png: {img.shape[1]}x{img.shape[0]} (expected 1200x750), pixel std {img[..., :3].std():.4f}")
    print(f"ok  README section: {png} {img.shape[1]}x{img.shape[0]}")


main()
readme_section()
for f in failures:
    print("FAIL", f)
print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
