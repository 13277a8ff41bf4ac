#!/usr/bin/python3
"""Where each target's CPU per call goes, from the perf recordings of bench/profile.sh.

    split.py OUTDIR NAME...

For each NAME, reads OUTDIR/NAME.data (perf record) and OUTDIR/NAME.lg (loadgen's report, for
the CPU per call), sorts every sample into one of the categories below by its module and symbol,
and prints one Markdown table: microseconds of CPU per call by category, one column per target.
Symbols of the JIT (perf map) and of Native AOT (mangled names) are both understood.
"""

import re
import subprocess
import sys

# The first rule that matches takes the sample. Symbols are matched with every run of characters
# that are not letters or digits made one dot, so JIT and AOT names read alike.
RULES = [
    ("kernel (system calls, wake-ups)", "kernel", None),
    ("libc (system-call wrappers)", "libc", None),
    ("runtime and native code", "native", None),
    ("transport: loops, connections, P/Invoke", "managed", r"Runner\.Linux|IL\.STUB\.PInvoke|SocketIo"),
    ("awaits: state machine, value-task sources", "managed",
     r"AsyncTaskMethodBuilder|ThreadPool|ExecutionContext|ValueTaskSource|StateMachineBox|CastHelpers|RunAsync"),
    ("reading the request (checks included)", "managed", r"FlatBufferReader|CallView|Utf8Utility\.GetPointer|ByteRange"),
    ("encoding the answer", "managed", r"Google\.FlatBuffers|Runner\.Write\.|FrameBuilder|Runner\.Encode|TranscodeToUtf8"),
    ("session, conf cache, call state", "managed",
     r"Session|ConfCache|Runner\.Call\.|Runner\.Request\.|Runner\.Response\.|FrameReader|Telemetry|Changes|List\.1|Dictionary|TimeProvider|Stopwatch"),
    ("chain and plugin", "managed", r"Chain|Filter|CSharp|SampleRunner|Plugin|FSharpFunc"),
    ("other managed code", "managed", None),
]

LINE = re.compile(r"\s+([\d.]+)%\s+(\[JIT\] tid \d+|\S+)\s+\[(.)\]\s+(.*)")


def kind(dso: str, symbol: str) -> str:
    if dso.startswith("[kernel"):
        return "kernel"
    if dso.startswith("libc") or dso == "[vdso]":
        return "libc"
    # Native AOT names managed methods Assembly_Namespace_Type__Method; the runtime's C++ has none.
    if dso.startswith("[JIT]") or ("__" in symbol and "::" not in symbol):
        return "managed"
    return "native"


def split(data: str) -> dict:
    report = subprocess.run(
        ["perf", "report", "-i", data, "--no-children", "-g", "none", "--sort", "dso,sym", "--percent-limit", "0"],
        capture_output=True, text=True, check=True).stdout
    shares = {name: 0.0 for name, _, _ in RULES}
    for line in report.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        percent, dso, symbol = float(m.group(1)), m.group(2), m.group(4)
        k, dotted = kind(dso, symbol), re.sub(r"[^A-Za-z0-9]+", ".", symbol)
        for name, rule_kind, pattern in RULES:
            if rule_kind == k and (pattern is None or re.search(pattern, dotted)):
                shares[name] += percent
                break
    total = sum(shares.values()) or 1.0
    return {name: share / total for name, share in shares.items()}


def cpu_per_call(lg: str) -> float:
    with open(lg) as f:
        for line in f:
            m = re.search(r"target pid \d+: cpu [\d.]+ s \([\d.]+ cores\) = ([\d.]+) us/call", line)
            if m:
                return float(m.group(1))
    raise SystemExit(f"{lg}: no CPU per call in loadgen's report")


def main() -> None:
    out, names = sys.argv[1], sys.argv[2:]
    per_call = {n: cpu_per_call(f"{out}/{n}.lg") for n in names}
    shares = {n: split(f"{out}/{n}.data") for n in names}
    print("| µs of CPU per call | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for name, _, _ in RULES:
        cells = [shares[n][name] * per_call[n] for n in names]
        if any(c >= 0.005 for c in cells):
            print(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    print("| **total** (loadgen) | " + " | ".join(f"**{per_call[n]:.2f}**" for n in names) + " |")


if __name__ == "__main__":
    main()
