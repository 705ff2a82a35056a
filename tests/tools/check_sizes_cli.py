#!/usr/bin/env python3
"""`moegrad train` with sizes past int64 or past the memory limit: each run must end at once
with exit code 1 (or 2 for a usage error) and one line on stderr naming what is too large or the
bytes it could not allocate; never a crash (free(): invalid pointer, SIGSEGV), a hang, or a run
that crawls through an overcommitted allocation. The memory limit is set through
MOEGRAD_CPU_MEMORY_LIMIT so the outcome does not depend on this machine's memory.

usage: check_sizes_cli.py MOEGRAD_BIN WORK_DIR
"""
import os
import subprocess
import sys

BIN, WORK = sys.argv[1], sys.argv[2]
TIMEOUT_S = 60  # each case ends well under a second; this only catches a hang or a crawl
BASE = ["train", "--steps", "1", "--warmup", "0", "--eval-every", "0", "--log-every", "1"]
failures = []

# (flags, environment, words the error line must contain)
CASES = [
    # 2^63 - 1 rows (was `free(): invalid pointer`) and 2^58 rows (was SIGSEGV in assign_slots):
    # past --batch-size's range, a usage error before any work; core's size checks, which
    # caught them before the range existed, are tested in tests/core/test_sizes.cpp.
    (["--batch-size", "9223372036854775807"], {}, ["--batch-size must be <="]),
    (["--batch-size", "288230376151711744"], {}, ["--batch-size must be <="]),
    (["--task", "sequence", "--batch-size", "288230376151711744"], {}, ["--batch-size must be <="]),
    # A batch that fits int64 but not the memory.
    (["--batch-size", "4294967296"], {"MOEGRAD_CPU_MEMORY_LIMIT": "1G"},
     ["cannot allocate", "bytes", "memory limit", "MOEGRAD_CPU_MEMORY_LIMIT"]),
    # A vocabulary whose tables and model need far more than the limit (ran on for minutes).
    (["--task", "sequence", "--vocab", "1000000000"], {"MOEGRAD_CPU_MEMORY_LIMIT": "1G"},
     ["cannot allocate", "bytes", "memory limit"]),
    # A model whose weights alone are over the limit.
    (["--dim", "65536", "--hidden", "65536"], {"MOEGRAD_CPU_MEMORY_LIMIT": "256M"},
     ["cannot allocate", "memory limit"]),
    # A malformed limit is an error of its own, not ignored.
    ([], {"MOEGRAD_CPU_MEMORY_LIMIT": "lots"}, ["MOEGRAD_CPU_MEMORY_LIMIT", "lots"]),
]


def run_case(flags, env, words):
    name = " ".join(flags) + "".join(f" [{k}={v}]" for k, v in env.items())
    e = dict(os.environ, **env)
    try:
        p = subprocess.run([BIN] + BASE + flags, capture_output=True, text=True, env=e, cwd=WORK,
                           timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        failures.append(f"{name}: still running after {TIMEOUT_S} s")
        return
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    # Error lines read "moegrad train: [op] ..."; a start-up echo of the config may precede them.
    errors = [l for l in lines if l.startswith("moegrad train: ")]
    if p.returncode not in (1, 2):
        failures.append(f"{name}: exit {p.returncode}, expected 1 or 2\n{p.stderr[-2000:]}")
    elif len(errors) != 1 or lines[-1] != errors[0]:
        failures.append(f"{name}: expected one error line, last on stderr\n{p.stderr[-2000:]}")
    elif not all(w in errors[0] for w in words):
        failures.append(f"{name}: the error line lacks {words}: {errors[0]}")
    elif len(errors[0]) > 400:
        failures.append(f"{name}: the error line is {len(errors[0])} characters long: {errors[0]}")
    else:
        print(f"ok: {name}: {errors[0]}")


os.makedirs(WORK, exist_ok=True)
for flags, env, words in CASES:
    run_case(flags, env, words)
for f in failures:
    print("FAIL:", f)
sys.exit(1 if failures else 0)
