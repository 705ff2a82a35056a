#!/usr/bin/env python3
"""Writes each ```cpp block of a Markdown file as its own program, so CTest compiles and runs
the README's examples. #include lines and namespace aliases go to file scope, the rest into
main(). Usage: extract_readme_snippets.py README.md OUT_DIR  (prints the files written)."""
import pathlib
import re
import sys

readme, out_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out_dir.mkdir(parents=True, exist_ok=True)
blocks = re.findall(r"```cpp\n(.*?)```", readme.read_text(), re.S)
for i, block in enumerate(blocks):
    head, body = [], []
    for line in block.splitlines():
        at_file_scope = line.startswith("#include") or re.match(r"namespace \w+ = ", line)
        (head if at_file_scope else body).append(line)
    text = ("// Generated from README.md: do not edit.\n" + "\n".join(head) +
            "\n\nint main() {\n" + "".join(f"  {l}\n" for l in body) + "  return 0;\n}\n")
    path = out_dir / f"readme_snippet_{i}.cpp"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    print(path)
