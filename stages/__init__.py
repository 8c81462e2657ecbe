"""DVC stage entry points (one module per stage) and their shared library (`stages.lib`)."""

import os

# OpenMP threads that spin while waiting starve each other (and any other process) on a small
# machine; an XGBoost fold took ~20x longer beside a busy process. Sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
