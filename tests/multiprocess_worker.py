"""Train the tiny model once per arm through the real training loop and write what this process holds
(`rank_<k>.json`: GroupDRO's q, the adversarial λ, the logged losses, the predictions). Run it plainly (one
process) or under `python -m torch.distributed.run --nproc_per_node N` (N processes, gloo on the CPU):

    python tests/multiprocess_worker.py BACKBONE OUT_DIR ARM [ARM ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from tiny_backbone import TARGETS, invented_essays, tiny_params

from stages.lib.encoders.backbone import load_encoder
from stages.lib.training.essay_model import build_essay_model
from stages.lib.training.objectives import make_objective
from stages.lib.training.precision import FP32
from stages.lib.training.trainer import accelerator_for, predict, seed_everything, train
from stages.lib.windows.essay_batches import encode_essays
from tests.typed_params import typed

N_ESSAYS = 30  # 8 batches of 4 (one short): an even number of batches, so 2 processes split them exactly


def fit(backbone: str, arm: str) -> dict:
    """One arm trained without dropout (dropout masks come from each process's own random stream)."""
    cfg = typed(tiny_params(Path(backbone), [0])).finetune
    budget = cfg.selected.model_copy(update={"threads": 1})
    torch.set_num_threads(1)
    seed_everything(5, deterministic=True)
    tokenizer, encoder = load_encoder(backbone)
    essays = invented_essays(N_ESSAYS, 3, seed=1)
    y = essays[TARGETS].to_numpy(float)
    y = (y - y.mean(0)) / y.std(0)
    groups = essays["prompt"].str[-1].map({"A": 0, "B": 1, "C": 2}).to_numpy()
    data = encode_essays(essays["text"].tolist(), tokenizer, 16, 4, y, groups)
    model = build_essay_model(encoder, len(TARGETS), budget.lora, 0.0, False, 0.0)
    objective = make_objective(arm, model.hidden_size, ["A", "B", "C"], cfg.objectives.of(arm))
    accelerator = accelerator_for(FP32, "cpu", budget)
    log = train(model, objective, data, budget, accelerator, pad_id=tokenizer.pad_token_id, seed=5, fold=0)
    out = predict(model, data, accelerator, pad_id=tokenizer.pad_token_id, batch_size=8, fold=0)
    return {"num_processes": accelerator.num_processes, "accumulation": accelerator.gradient_accumulation_steps,
            "step_loss": log["step_loss"], "micro_batches": log["micro_batches"],
            "loss_checks": log["finite_checks"]["training loss"], "pred": out.pred.tolist(),
            "q": objective.q.tolist() if arm == "groupdro" else None,
            "lam": getattr(objective, "lam", None)}


def main(argv: list[str]) -> None:
    backbone, out_dir, *arms = argv
    import torch.distributed as dist

    results = {arm: fit(backbone, arm) for arm in arms}
    rank = dist.get_rank() if dist.is_initialized() else 0
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / f"rank_{rank}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
