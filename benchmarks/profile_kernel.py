"""Where the cohort kernel spends its time, by function and by instruction, with Linux `perf`.

`perf` cannot name numba's JIT-compiled code: it sits in anonymous memory. This script, run
under `perf record`, compiles the kernels afresh (a cached library keeps no module to look
functions up in), writes `/tmp/perf-<pid>.map` (the map `perf` reads for JIT code) with the
address of every compiled function of `forecast_cohorts`, dumps each function's machine code
to the output directory, then runs the reference workload on one thread. `report` then counts
the samples per function and, for one function, per instruction, next to its disassembly
(`objdump`), so a hot loop can be found and read.

    mkdir -p prof
    perf record -F 4000 -o prof/perf.data .venv/bin/python benchmarks/profile_kernel.py run prof
    perf script -i prof/perf.data -F ip > prof/ips.txt
    .venv/bin/python benchmarks/profile_kernel.py report prof [function] [top]

`run DIR [paths] [open] [arrivals] [sets]` (defaults 300, 20000, 300, 1: the reference
workload's per-path work; `sets` > 1 gives the paths that many parameter sets in turn, the
hazards scattered around the defaults as a fitted posterior's are). `report DIR [function]
[top]` (default: the function with the most samples, its 40 hottest instructions; the
annotated disassembly goes to `DIR/<function>.txt`).
Samples land on the instruction after a slow one (skid): read a hot instruction with the one
before it. Samples outside the kernels (Python, the compiler) are left out of the shares.
"""

from __future__ import annotations

import collections
import ctypes
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CODE_BYTES = 1 << 18  # dumped per function (at most: up to the next function's start)


def run(out: Path, paths: int, n_open: int, arrivals: float, sets: int) -> None:
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba_profile_")
    os.environ["NUMBA_NUM_THREADS"] = "1"
    sys.path.insert(0, str(Path(__file__).parent))
    import numpy as np
    from simulator import AS_OF, reference_inputs

    from forecast.parameters import Parameters
    from forecast.simulate import kernels, simulate

    model, params, pipeline = reference_inputs(n_open, arrivals)
    if sets > 1:  # as a fitted posterior gives: hazards around the defaults, a set per path
        def rep(a):
            return np.repeat(a, sets, axis=0)

        noise = np.random.default_rng(1).lognormal(0.0, 0.1, (sets, *params.hazards.shape[1:]))
        params = Parameters(rep(params.hazards) * noise, rep(params.arrivals_mean),
                            rep(params.arrivals_dispersion), rep(params.day_of_week),
                            rep(params.deal_mu), rep(params.deal_sigma))
    simulate(model, params, pipeline, AS_OF, 5, 2, 0)  # compile
    syms = []
    for overload in kernels.forecast_cohorts.overloads.values():
        lib = overload.library
        for fn in lib._final_module.functions:  # numba's CodeLibrary: no public listing
            if not fn.is_declaration:
                address = lib.get_pointer_to_function(fn.name)
                if address:
                    syms.append((address, fn.name))
    syms.sort()
    regions = []  # mapped memory: a dump must not read past the end of its function's
    for line in open("/proc/self/maps"):
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        regions.append((lo, hi))
    table = []
    for i, (address, name) in enumerate(syms):
        size = min(CODE_BYTES, syms[i + 1][0] - address) if i + 1 < len(syms) else CODE_BYTES
        size = min(size, next(hi for lo, hi in regions if lo <= address < hi) - address)
        table.append((address, name, size))
        (out / f"code_{address:x}.bin").write_bytes(ctypes.string_at(address, size))
    with open(f"/tmp/perf-{os.getpid()}.map", "w") as fh:
        fh.writelines(f"{a:x} {s:x} {n}\n" for a, n, s in table)
    (out / "functions.json").write_text(json.dumps(table))
    t0 = time.perf_counter()
    simulate(model, params, pipeline, AS_OF, 365, paths, 0)
    wall = time.perf_counter() - t0
    print(f"{paths} paths on one thread: {wall / paths * 1e3:.2f} ms a path", file=sys.stderr)


def short(name: str) -> str:
    """``_ZN8forecast8simulate7kernels9run_aloneB3v39...`` -> ``kernels.run_alone``."""
    rest = name[3:] if name.startswith("_ZN") else ""
    parts = []
    while m := re.match(r"\d+", rest):
        n, start = int(m.group(0)), len(m.group(0))
        parts.append(rest[start:start + n])
        rest = rest[start + n:]
    return ".".join(parts[-2:]) if parts else name[:60]


def report(out: Path, function: str | None, top: int) -> None:
    if not (out / "functions.json").is_file() or not (out / "ips.txt").is_file():
        raise SystemExit(f"{out}: no functions.json or ips.txt; record with `run` under perf "
                         "and write ips.txt with `perf script` first (see the docstring)")
    table = json.loads((out / "functions.json").read_text())
    per_fn: collections.Counter = collections.Counter()
    per_ip: collections.Counter = collections.Counter()
    for line in open(out / "ips.txt"):
        line = line.strip()
        if not line:
            continue
        ip = int(line, 16)
        for address, name, size in table:
            if address <= ip < address + size:
                per_fn[name] += 1
                per_ip[ip] += 1
                break
    total = sum(per_fn.values())
    if not total:
        raise SystemExit("no samples in the kernels: was `run` recorded with perf record?")
    print(f"{total} samples in the kernels")
    for name, n in per_fn.most_common():
        print(f"{100 * n / total:6.1f}%  {short(name)}")
    name = next((n for n in per_fn if function and function in n), per_fn.most_common(1)[0][0])
    address, _, size = next(t for t in table if t[1] == name)
    asm = subprocess.run(["objdump", "-D", "-b", "binary", "-m", "i386:x86-64",
                          "--adjust-vma", hex(address), str(out / f"code_{address:x}.bin")],
                         capture_output=True, text=True, check=True).stdout
    n_fn = per_fn[name]
    lines = []
    for row in asm.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s*(.*)", row)
        if m:
            ip = int(m.group(1), 16)
            lines.append((ip, f"{100 * per_ip[ip] / n_fn:5.1f}  {ip - address:6x}  {m.group(2)}"))
    path = out / f"{short(name)}.txt"
    path.write_text("\n".join(text for _, text in lines) + "\n")
    print(f"\n{short(name)}: {n_fn} samples; the hottest instructions (offset, share of the "
          f"function's samples; all in {path}):")
    for ip, _n in sorted(((ip, n) for ip, n in per_ip.items()
                         if address <= ip < address + size), key=lambda x: -x[1])[:top]:
        text = next(t for i, t in lines if i == ip)
        print(text)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("run", "report"):
        raise SystemExit(__doc__)
    directory = Path(sys.argv[2])
    if sys.argv[1] == "run":
        directory.mkdir(parents=True, exist_ok=True)
        args = [int(a) for a in sys.argv[3:7]]
        run(directory, *(args + [300, 20000, 300, 1][len(args):]))
    else:
        report(directory, sys.argv[3] if len(sys.argv) > 3 else None,
               int(sys.argv[4]) if len(sys.argv) > 4 else 40)
