#!/usr/bin/env python3
"""The shared library exports exactly the API: every function that
include/backprop.h declares with BP_API, and nothing else.

Usage: check_exports.py HEADER LIBRARY
Reads the header's BP_API declarations and `nm -D --defined-only` of the
library; prints both differences and exits 1 if either is non-empty."""
import re
import subprocess
import sys


def declared(header):
    text = open(header, encoding="utf-8").read()
    return set(re.findall(r"^BP_API\b[^(;]*?\b(bp_\w+)\s*\(", text, re.M))


def exported(library):
    out = subprocess.run(["nm", "-D", "--defined-only", library], check=True,
                         capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        # Text, data and read-only symbols; the linker's own markers (A) and
        # the symbol versioning entries are not part of any interface.
        if len(parts) == 3 and parts[1] in "TDBRWVtdbr" and parts[1] not in "A":
            names.add(parts[2])
    return names


def main():
    header, library = sys.argv[1], sys.argv[2]
    want, have = declared(header), exported(library)
    if len(want) < 10:
        print(f"check_exports: only {len(want)} BP_API declarations found in {header}")
        return 1
    missing, extra = sorted(want - have), sorted(have - want)
    for name in missing:
        print(f"declared but not exported: {name}")
    for name in extra:
        print(f"exported but not declared in backprop.h: {name}")
    print(f"check_exports: {len(want)} declared, {len(have)} exported, "
          f"{len(missing)} missing, {len(extra)} extra")
    return 1 if missing or extra else 0


if __name__ == "__main__":
    sys.exit(main())
