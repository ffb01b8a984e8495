#!/usr/bin/env python3
"""The structure rules of docs/design.md, checked: dependencies run one way
(base <- format <- boot <- builder, updater), no source file of the five libraries over
450 lines, no function of their non-test code over 80 lines. Prints one line per
breach and exits 1; silent and 0 when all hold.

    scripts/check-structure.py [--report]   (--report: also list the longest functions)
"""
import re
import subprocess
import sys
from pathlib import Path

LAYERS = ["base", "format", "boot", "builder", "updater", "powerloss"]
# What each library may include besides itself.
ALLOWED = {"base": set(), "format": {"base"}, "boot": {"base", "format"},
           "builder": {"base", "format", "boot"}, "updater": {"base", "format", "boot"},
           # the power-loss campaign, a test tool on top of the updater (docs/powerloss.md)
           "powerloss": {"base", "format", "boot", "updater"}}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 450, 80
CONTROL = re.compile(r"\b(if|for|while|switch|catch|do|else|try)\b\s*(\(.*\))?\s*$")


def strip_code(text):
    """The text with comments, strings and char literals blanked (line breaks kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(")" + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    """(name, first line, length) of each outermost function body in a C++ file."""
    code = strip_code(path.read_text(errors="replace"))
    found, stack, line = [], [], 1
    for i, c in enumerate(code):
        if c == "\n":
            line += 1
        elif c == "{":
            head = code[max(0, code.rfind(";", 0, i), code.rfind("}", 0, i), code.rfind("{", 0, i)) + 1:i]
            head_flat = " ".join(head.split())
            is_fn = (not any(s[0] for s in stack)
                     and re.search(r"\)\s*(const|override|final|noexcept|mutable|\s)*(->\s*[\w:<>&*, ]+)?\s*$", head_flat)
                     and not CONTROL.search(head_flat)
                     and not head_flat.lstrip().startswith(("namespace", "class", "struct", "enum", "extern")))
            name = re.search(r"([~\w:]+)\s*\(", head_flat)
            stack.append((bool(is_fn), line, name.group(1) if name else "?"))
        elif c == "}" and stack:
            is_fn, start, name = stack.pop()
            if is_fn:
                found.append((name, start, line - start + 1))
    return found


def main():
    report = "--report" in sys.argv
    top = Path(__file__).resolve().parent.parent
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"] + LAYERS,
                           cwd=top, capture_output=True, text=True, check=True).stdout.split()
    problems, longest = [], []
    for rel in sorted(f for f in files if f.endswith((".cpp", ".h")) and (top / f).exists()):
        path, layer = top / rel, rel.split("/")[0]
        text = path.read_text(errors="replace")
        for n, l in enumerate(text.splitlines(), 1):
            m = re.match(r'\s*#include\s+"(\w+)/', l)
            if m and m.group(1) in LAYERS and m.group(1) != layer and m.group(1) not in ALLOWED[layer] \
                    and not ("/tests/" in rel and m.group(1) == "builder"):
                problems.append(f"{rel}:{n}: {layer}/ includes {m.group(1)}/ (dependencies run base <- format <- boot <- builder, updater)")
        lines = text.count("\n")
        if lines > MAX_FILE_LINES:
            problems.append(f"{rel}: {lines} lines (at most {MAX_FILE_LINES}); split it by concept")
        for name, start, length in functions(path):
            longest.append((length, f"{rel}:{start}", name))
            if length > MAX_FUNCTION_LINES and "/tests/" not in rel and "/fuzz/" not in rel:
                problems.append(f"{rel}:{start}: {name} is {length} lines (at most {MAX_FUNCTION_LINES}); name its steps as functions")
    for p in problems:
        print(p)
    if report:
        for length, where, name in sorted(longest, reverse=True)[:15]:
            print(f"  {length:4d}  {where}  {name}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
