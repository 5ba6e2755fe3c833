"""Run every benchmark in ``benchmarks/`` and collect their figures into one table (DESIGN §8, issue 9).

    python benchmarks/run_all.py [--quick] [--out runs/benchmarks] [--only strategies scoring] [--timeout 1800]

Each ``bench_*.py`` runs in its own process (with ``OMP_NUM_THREADS=1`` unless already set), with its own
quick settings under ``--quick``. A benchmark that takes ``--json`` writes its figures there; the older ones
(``bench_data.py``, ``bench_metrics.py``) print them, and are parsed here. Writes ``benchmarks.md`` (the
table, under a header naming the machine) and ``benchmarks.json``, plus each benchmark's output as
``<name>.log``, into ``--out``; prints the table. Exit status 1 when a figure misses its target or a
benchmark fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import Figure, hardware, verdict

from breastssl.fsutil import atomic_file

HERE = Path(__file__).resolve().parent

# arguments of the benchmarks that have no --quick of their own
QUICK_ARGS = {
    "bench_data.py": ["--n", "2", "--batch", "32"],
    "bench_metrics.py": ["--max-ref-seconds", "5"],
}


def parse_data(out: str) -> list[Figure]:
    """Figures of bench_data.py: reading and loading rates, and loading / consumption (issue 9: ≥ 3)."""
    figs = []
    for pattern, name in (
        (r"DBT DICOM read .*?: ([\d,.]+) slices/s", "DBT DICOM read"),
        (r"cached loading .*?: ([\d,.]+) slices/s", "cached loading (DataLoader)"),
        (r"tiny_cnn forward\+backward .*?: ([\d,.]+) slices/s", "training consumption (tiny_cnn)"),
    ):
        if m := re.search(pattern, out):
            figs.append(Figure(name, float(m.group(1).replace(",", "")), "slices/s"))
    if m := re.search(r"ratio cached loading / training consumption: ([\d.]+)x", out):
        figs.append(Figure("data loading / training consumption", float(m.group(1)), "x", ">= 3"))
    return figs


def parse_metrics(out: str) -> list[Figure]:
    """Speed-ups of bench_metrics.py; the issue's targets apply at 10^5: DeLong ≥ 50×, DBT FROC ≥ 20×."""
    figs = []
    targets = {"DeLong paired test": ">= 50", "DBT FROC": ">= 20"}
    row = re.compile(r"^(DeLong paired test|DBT FROC)\s+([\d,]+) (\w+)\s+[\d.]+\s+[\d.]+\s+(\d+)x\s+(.*)$")
    for line in out.splitlines():
        if m := row.match(line.strip()):
            n = int(m.group(2).replace(",", ""))
            target = targets[m.group(1)] if n == 10**5 else ""
            note = "extrapolated reference" if m.group(5).startswith("extrap") else "measured reference"
            figs.append(
                Figure(f"{m.group(1)} speed-up at {m.group(2)} {m.group(3)}", float(m.group(4)), "x", target, note)
            )
    return figs


PARSERS = {"bench_data.py": parse_data, "bench_metrics.py": parse_metrics}
# arguments added in both modes: the fast paths' before/after figures belong in the table too
EXTRA_ARGS = {"bench_strategies.py": ["--fastpaths"]}


def command(script: Path, quick: bool, json_path: Path) -> list[str]:
    """The command line of one benchmark: its quick settings, and --json when it writes figures."""
    source = script.read_text()
    args = [sys.executable, str(script)]
    if quick:
        args += ["--quick"] if '"--quick"' in source else QUICK_ARGS.get(script.name, [])
    args += EXTRA_ARGS.get(script.name, [])
    if '"--json"' in source:
        args += ["--json", str(json_path)]
    return args


def run_one(script: Path, quick: bool, out_dir: Path, timeout: float) -> tuple[list[Figure], dict]:
    """Run one benchmark; returns its figures and a record (command, seconds, exit status)."""
    json_path = out_dir / f"{script.stem}.json"
    json_path.unlink(missing_ok=True)
    cmd = command(script, quick, json_path)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=HERE.parent)
        code, out, err = res.returncode, res.stdout, res.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = -1, exc.stdout or "", f"timed out after {timeout:.0f} s"
        out = out.decode() if isinstance(out, bytes) else out
    seconds = time.perf_counter() - start
    (out_dir / f"{script.stem}.log").write_text(f"$ {' '.join(cmd)}\n{out}\n--- stderr ---\n{err}")
    root = str(HERE.parent) + os.sep
    shown = ["python", *(c.removeprefix(root) for c in cmd[1:])]
    record = {"bench": script.name, "command": " ".join(shown), "seconds": round(seconds, 1), "exit": code}
    if code != 0:
        tail = (err.strip().splitlines() or ["no output"])[-1][:200]
        return [Figure("run", float("nan"), "", "", f"exit {code}: {tail}")], record
    if json_path.is_file():
        figs = [Figure.from_dict(f) for f in json.loads(json_path.read_text())["figures"]]
    elif script.name in PARSERS:
        figs = PARSERS[script.name](out)
    else:
        figs = []
    if not figs:
        figs = [Figure("run", float("nan"), "", "", f"no figures collected; see {script.stem}.log")]
    return figs, record


def fmt_value(fig: Figure) -> str:
    if fig.value != fig.value:
        return "-"
    v = fig.value
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return f"{text} {fig.unit}".strip()


def markdown(rows: list[tuple[str, Figure]], records: list[dict], quick: bool) -> str:
    """The table, under a header naming the machine and how the benchmarks were run."""
    hw = hardware()
    lines = [
        "# breastssl benchmarks",
        "",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; mode: {'quick' if quick else 'full'}",
        f"- CPU: {hw['cpu']}, {hw['cores']} cores; torch {hw['torch']}; device: {hw['device']}",
        f"- python {hw['python']}; load average at the end: {hw['load_average']}; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', '1')}; timings: {hw['clock']} where a benchmark runs one thread",
        "- ratios are measured within one run (DESIGN §8); absolute figures hold for this machine only",
        "",
        "| benchmark | figure | value | target | result | note |",
        "|---|---|---|---|---|---|",
    ]
    for bench, fig in rows:
        failed_run = fig.name == "run" and fig.value != fig.value
        result = "FAIL" if failed_run else verdict(fig.passed)
        lines.append(f"| {bench} | {fig.name} | {fmt_value(fig)} | {fig.target or '-'} | {result} | {fig.note} |")
    lines += ["", "| benchmark | command | seconds | exit |", "|---|---|---|---|"]
    lines += [f"| {r['bench']} | `{r['command']}` | {r['seconds']} | {r['exit']} |" for r in records]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="each benchmark's quick settings (minutes in all)")
    ap.add_argument("--out", default="runs/benchmarks", help="folder for benchmarks.md, benchmarks.json and logs")
    ap.add_argument("--only", nargs="*", default=None, help="run only these (e.g. strategies scoring)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per benchmark")
    args = ap.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        wanted = {n.removeprefix("bench_").removesuffix(".py") for n in args.only}
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    rows: list[tuple[str, Figure]] = []
    records = []
    for script in scripts:
        print(f"running {script.name} ...", flush=True)
        figs, record = run_one(script, args.quick, out_dir, args.timeout)
        print(f"  {record['seconds']:.0f} s, exit {record['exit']}, {len(figs)} figures", flush=True)
        rows += [(script.stem, f) for f in figs]
        records.append(record)
    text = markdown(rows, records, args.quick)
    with atomic_file(out_dir / "benchmarks.md") as tmp:
        tmp.write_text(text)
    payload = {"hardware": hardware(), "quick": args.quick, "runs": records,
               "figures": [{"bench": b, **f.as_dict()} for b, f in rows]}  # fmt: skip
    with atomic_file(out_dir / "benchmarks.json") as tmp:
        tmp.write_text(json.dumps(payload, indent=1))
    print()
    print(text)
    print(f"written: {out_dir / 'benchmarks.md'}, {out_dir / 'benchmarks.json'}")
    failed = any(f.passed is False or (f.name == "run" and f.value != f.value) for _, f in rows)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
