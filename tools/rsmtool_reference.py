"""RSMTool's own figures for the rows `tests/test_fairness.py` builds, for that test to compare against.
RSMTool 12 needs numpy < 2, so it runs in its own environment:

    python3.11 -m venv /tmp/rsmvenv && /tmp/rsmvenv/bin/pip install rsmtool==12.0.0
    /tmp/rsmvenv/bin/python tools/rsmtool_reference.py > tests/rsmtool_reference.json"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fairness_rows import fairness_rows  # numpy and pandas only: it runs beside RSMTool


def main() -> None:
    from rsmtool.fairness_utils import get_fairness_analyses
    from rsmtool.utils.metrics import difference_of_standardized_means, quadratic_weighted_kappa

    warnings.filterwarnings("ignore")
    rows = fairness_rows()
    out: dict = {"rsmtool": __import__("rsmtool").__version__}
    for system in ("grid", "continuous"):
        frame = rows[["human", system, "group"]].rename(columns={"human": "sc1"})
        _, container = get_fairness_analyses(frame.copy(), "group", system)
        metrics = container["fairness_metrics_by_group"]
        out[system] = {
            "base_group": str(metrics["base_category"].iloc[0]),
            **{key: {"r2_adj": float(metrics.at["R2", name]), "p": float(metrics.at["sig", name])}
               for key, name in (("osa", "Overall score accuracy"), ("osd", "Overall score difference"),
                                 ("csd", "Conditional score difference"))},
            "qwk": float(quadratic_weighted_kappa(rows["human"].to_numpy(), rows[system].to_numpy())),
            "dsm": {str(level): float(difference_of_standardized_means(
                rows["human"][rows["group"] == level].to_numpy(), rows[system][rows["group"] == level].to_numpy(),
                rows["human"].mean(), rows[system].mean(), rows["human"].std(ddof=1), rows[system].std(ddof=1)))
                for level in sorted(rows["group"].unique())},
        }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    np.seterr(all="ignore")
    pd.options.mode.chained_assignment = None
    main()
