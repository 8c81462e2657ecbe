"""Time the main job as a new user meets it: a fresh clone of the committed HEAD beside this checkout (so
`../shared` resolves the same), `./scripts/repro.sh` (setup, then `dvc repro` of every stage from an empty DVC
cache), each stage's wall time read from DVC's own "Running stage" lines. Writes a metrics file with the machine,
the commit and the target.

    python -m tools.main_job_benchmark                      # -> metrics/benchmark_main_job.json
    python -m tools.main_job_benchmark --cache-dir .dvc/cache  # the clone fills this checkout's DVC cache

With `--cache-dir` the clone writes its outputs into that cache (empty caches only make it a fresh-clone run), so
`dvc checkout` here afterwards restores what the clone computed."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 30 * 60
STAGE_LINE = re.compile(r"^Running stage '([^']+)':")


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def stage_seconds(lines: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Seconds from each "Running stage" line to the next one (the last one to `end`)."""
    starts = [(t, m.group(1)) for t, line in lines if (m := STAGE_LINE.match(line))]
    return {name: round((starts[i + 1][0] if i + 1 < len(starts) else end) - t, 1)
            for i, (t, name) in enumerate(starts)}


def run_main_job(clone: Path, log_path: Path) -> tuple[float, float, dict[str, float]]:
    """Run `scripts/repro.sh` in `clone`; returns (setup seconds, repro seconds, per-stage seconds)."""
    start = time.monotonic()
    lines: list[tuple[float, str]] = []
    env = {k: v for k, v in os.environ.items() if k not in ("AES_PARAMS", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"  # DVC's "Running stage" lines arrive when printed, so their times are right
    with log_path.open("w") as log, subprocess.Popen(["./scripts/repro.sh"], cwd=clone, env=env, text=True,
                                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        for line in proc.stdout:
            lines.append((time.monotonic(), line))
            log.write(line)
        proc.wait()
    end = time.monotonic()
    if proc.returncode != 0:
        sys.exit(f"main job failed (exit {proc.returncode}); log: {log_path}")
    first_stage = next((t for t, line in lines if STAGE_LINE.match(line)), end)
    return first_stage - start, end - first_stage, stage_seconds(lines, end)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "metrics" / "benchmark_main_job.json")
    parser.add_argument("--cache-dir", type=Path, help="a DVC cache for the clone to fill (default: its own)")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args(argv)
    commit = git("rev-parse", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        print("note: uncommitted changes are not in the clone; the benchmark times the commit", file=sys.stderr)
    clone = Path(tempfile.mkdtemp(prefix="main-job-", dir=ROOT.parent))  # beside this checkout: ../shared
    try:
        git("clone", "-q", str(ROOT), str(clone), cwd=ROOT.parent)
        if args.cache_dir:
            (clone / ".dvc" / "config.local").write_text(f"[cache]\n    dir = {args.cache_dir.resolve()}\n")
        log = clone.parent / f"{clone.name}.log"
        setup, repro, stages = run_main_job(clone, log)
    finally:
        if not args.keep:
            shutil.rmtree(clone, ignore_errors=True)
    total = setup + repro
    record = {
        "what": "the main job from a fresh clone: ./scripts/repro.sh (setup + dvc repro of every stage, empty cache)",
        "command": "python -m tools.main_job_benchmark",
        "commit": commit,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
        "seconds": {"total": round(total, 1), "setup": round(setup, 1), "dvc_repro": round(repro, 1)},
        "stage_seconds": dict(sorted(stages.items(), key=lambda kv: -kv[1])),
        "target_seconds": TARGET_SECONDS,
        "within_target": total <= TARGET_SECONDS,
        "log": str(log),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"main job: {total / 60:.1f} min (setup {setup:.0f} s, dvc repro {repro:.0f} s) on {record['machine']} "
          f"at {commit[:7]} -> {args.out}" + (f"; clone kept: {clone}" if args.keep else ""))


if __name__ == "__main__":
    main()
