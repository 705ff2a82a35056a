#!/usr/bin/env python3
"""Runs every command docs/scaling.md shows and checks that the output pasted under it is what
the command prints now. Each ```sh block holds one command of bench/scaling_model.py and is
followed by a ```text block with its exact output; the commands run from the source root.

usage: check_scaling_doc.py SOURCE_ROOT
"""
import difflib
import re
import shlex
import subprocess
import sys

root = sys.argv[1]
text = open(f"{root}/docs/scaling.md").read()
blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
pairs = 0
for i, (lang, body) in enumerate(blocks):
    if lang != "sh":
        continue
    command = body.strip()
    assert "\n" not in command, f"one command per sh block: {command!r}"
    assert command.startswith("/usr/bin/python3 bench/scaling_model.py"), f"not a scaling_model.py command: {command}"
    assert i + 1 < len(blocks) and blocks[i + 1][0] == "text", f"no ```text output block after: {command}"
    want = blocks[i + 1][1]
    print("+", command, flush=True)
    p = subprocess.run(shlex.split(command), cwd=root, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"docs/scaling.md command failed ({p.returncode}): {command}\n{p.stderr}")
    if p.stdout != want:
        diff = difflib.unified_diff(want.splitlines(), p.stdout.splitlines(), "docs/scaling.md", "now", lineterm="")
        sys.exit(f"docs/scaling.md shows other output than `{command}` prints now:\n" + "\n".join(diff))
    pairs += 1
assert pairs >= 3, f"docs/scaling.md shows {pairs} commands; expected the GPU table, the fit and --check"
print(f"docs/scaling.md: {pairs} commands, output as shown")
