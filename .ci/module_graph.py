#!/usr/bin/env python3
"""The service's module graph: which top-level modules of src/ each one
imports (`crate::...` paths outside `#[cfg(test)]`). Prints it and fails when
modules import each other, directly or through others, so imports keep
flowing one way (README, "Layout").

    python3 .ci/module_graph.py
"""
import os
import re
import sys
from pathlib import Path

SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "src"


def module_of(path: Path) -> str:
    """`src/api/tasks.rs` -> `api`, `src/db.rs` -> `db`."""
    return path.relative_to(SRC).parts[0].removesuffix(".rs")


def braced(text: str, start: int) -> str:
    """The text from `start` up to the brace that closes the one before it."""
    depth, end = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        end += 1
    return text[start : end - 1]


def heads(group: str) -> list[str]:
    """The first segment of each path in a `{a::b, c, d::{e, f}}` group."""
    items, depth, current = [], 0, ""
    for ch in group:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    items.append(current)
    return [re.split(r"::|\s", item.strip())[0] for item in items if item.strip()]


def imports(source: str, root: str) -> set[str]:
    """The modules named right after `root::`, alone or in a group."""
    found = set()
    for group in re.finditer(rf"\b{root}::\{{", source):
        found.update(heads(braced(source, group.end())))
    found.update(re.findall(rf"\b{root}::(\w+)", source))
    return found


edges: dict[str, set[str]] = {}
for path in sorted(SRC.rglob("*.rs")):
    module = module_of(path)
    if module == "lib":
        continue
    source = path.read_text().split("#[cfg(test)]")[0]
    source = re.sub(r"//.*", "", source)
    used = imports(source, "crate")
    if module == "main":
        used |= imports(source, "todo_api")
    edges.setdefault(module, set()).update(used - {module, "self"})


def reachable(start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for target in edges.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


for module in sorted(edges):
    print(f"{module:10} -> {', '.join(sorted(edges[module]))}")
cycles = sorted({tuple(sorted((a, b))) for a in edges for b in reachable(a) if a != b and a in reachable(b)})
print("cycles:", ", ".join(" <-> ".join(pair) for pair in cycles) or "none")
sys.exit(1 if cycles else 0)
