"""On `PYTHONPATH` in the device rehearsal: this interpreter stands in for the lent GPU machine's, which lacks
the distributions named in `$DEVICE_STANDIN_MISSING` (comma-separated top-level modules). Such a module imports
only from a directory under `$AES_DEVICE_TMP` (where the plan installs the carried wheels); anywhere else it is
missing, as on the device."""

import os
import sys
from importlib.machinery import PathFinder

MISSING = {name for name in os.environ.get("DEVICE_STANDIN_MISSING", "").split(",") if name}
CARRIED_ROOT = os.environ.get("AES_DEVICE_TMP") or None


class DeviceImage:
    """A meta-path finder that hides the missing distributions outside the carried site directory."""

    def find_spec(self, name, path=None, target=None):
        if "." in name or name not in MISSING:
            return None  # submodules resolve through their package's __path__
        carried = [p for p in sys.path if CARRIED_ROOT and p.startswith(CARRIED_ROOT)]
        spec = PathFinder.find_spec(name, carried)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r} (not on the device)", name=name)
        return spec


sys.meta_path.insert(0, DeviceImage())
