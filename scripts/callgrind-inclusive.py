#!/usr/bin/env python3
"""Inclusive instruction count of functions in a callgrind output file.

    python3 scripts/callgrind-inclusive.py FILE NAME

Prints the instructions (Ir) spent in the functions whose name contains NAME, callees included:
the sum, over those functions' blocks, of their own cost lines and of the inclusive costs of the
calls they make. With an empty NAME, the file's total. (callgrind_annotate --inclusive splits a
function by the source files its inlined parts come from; this does not.) The functions must not
call one another, or a cost would be counted twice. Used by scripts/callgrind.sh.
"""

import re
import sys

COST = re.compile(r"^([+-]?\d+|\*)\s+(\d+)$")


def main():
    path, name = sys.argv[1], sys.argv[2]
    names = {}
    total = 0
    summary = None
    inside = False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("summary:") or line.startswith("totals:"):
                summary = int(line.split()[1])
                continue
            if line.startswith("fn="):
                m = re.match(r"fn=\((\d+)\)(?: (.*))?", line)
                if m:
                    if m.group(2) is not None:
                        names[m.group(1)] = m.group(2)
                    fn = names.get(m.group(1), "")
                else:
                    fn = line[3:]
                inside = bool(name) and name in fn
                continue
            if line.startswith("cfn="):
                # Also names a function (by id) for later `fn=` lines.
                m = re.match(r"cfn=\((\d+)\) (.*)", line)
                if m:
                    names[m.group(1)] = m.group(2)
                continue
            if line.startswith("calls="):
                continue
            m = COST.match(line)
            if m and inside:
                # Own cost lines, and the inclusive cost line that follows each `calls=`.
                total += int(m.group(2))
    if not name:
        print(summary or 0)
    else:
        print(total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
