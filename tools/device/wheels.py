"""What the device lacks, carried as wheels. The modules a device session runs (`DEVICE_ENTRIES`) are followed
through their imports (inside functions too); every third-party distribution they reach, with its own
requirements, that the device image (`image.txt`) does not hold is carried, at the version of
`requirements.lock`, as wheels for the device's Python, installed there offline (`--no-index --no-deps
--target`). `tests/test_device_rehearsal.py` pins the carried set, so a device-run module that gains an import
off the image fails there until the plan is checked for it.

    python -m tools.device.wheels                 # download into .device/wheels (cp312, manylinux x86_64)
    python -m tools.device.wheels --check         # only list what is carried; exit 1 if something is missing"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

from tools.stage_deps import imported_modules, module_file

ROOT = Path(__file__).resolve().parents[2]
IMAGE = Path(__file__).with_name("image.txt")
LOCK = ROOT / "requirements.lock"
DEVICE_PYTHON = "3.12"
# what a device session runs: scripts/gpu_gate.sh (folds, preflight, finetune, collect, the budget selection),
# scripts/gpu_benchmarks.sh (the benchmark) and the weight receiver
DEVICE_ENTRIES = ("stages.folds", "stages.preflight", "stages.finetune", "stages.collect",
                  "stages.lib.core.config", "tools.benchmark", "tools.device.weights")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
PROJECT = ("stages", "tools")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_distributions(path: Path = IMAGE) -> set[str]:
    return {normalise(line.strip()) for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def project_file(name: str, root: Path = ROOT) -> Path | None:
    return module_file(name, root, PROJECT)


def third_party_imports(entries: tuple[str, ...] = DEVICE_ENTRIES, root: Path = ROOT) -> dict[str, str]:
    """Top-level third-party module → the first project file that imports it, over the entries' closure."""
    seen: set[Path] = set()
    todo = [f for f in (project_file(e, root) for e in entries) if f is not None]
    found: dict[str, str] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in sorted(imported_modules(path)):
            top = name.split(".")[0]
            if top in PROJECT:
                parts = name.split(".")
                todo.extend(f for d in range(1, len(parts) + 1)
                            if (f := project_file(".".join(parts[:d]), root)) is not None and f not in seen)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, path.relative_to(root).as_posix())
    return found


def distributions_of(modules: dict[str, str]) -> dict[str, str]:
    """Distribution (normalised) → the module it provides and where that is imported; an import no installed
    distribution provides fails naming the file."""
    providers = importlib.metadata.packages_distributions()
    out: dict[str, str] = {}
    for module, where in modules.items():
        if module not in providers:
            raise SystemExit(f"{where} imports {module!r}, which no installed distribution provides")
        for dist in providers[module]:
            out.setdefault(normalise(dist), f"{module} ({where})")
    return out


def requirements(dist: str) -> set[str]:
    """The distribution's unconditional requirements (extras and other platforms' markers left out)."""
    names = set()
    for req in importlib.metadata.requires(dist) or []:
        if ";" in req and ("extra ==" in req or "sys_platform == \"win32\"" in req):
            continue
        names.add(normalise(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0]))
    return names


def carried(image: set[str] | None = None, entries: tuple[str, ...] = DEVICE_ENTRIES) -> dict[str, str]:
    """Distribution → why: everything the device-run modules reach, with requirements, that the image lacks."""
    image = image_distributions() if image is None else image
    needed = distributions_of(third_party_imports(entries))
    todo = [d for d in needed if d not in image]
    out = {d: needed[d] for d in todo}
    while todo:
        dist = todo.pop()
        for req in requirements(dist):
            if req not in image and req not in out:
                out[req] = f"required by {dist}"
                todo.append(req)
    return dict(sorted(out.items()))


def locked_versions(lock: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==", 1)
            pins[normalise(name.strip())] = version.split()[0].split("+")[0]
    return pins


def download(dists: list[str], dest: Path, python: str = DEVICE_PYTHON) -> list[Path]:
    """Wheels of `dists` at their locked versions for `python` on manylinux x86-64 (pure wheels too)."""
    pins = locked_versions()
    unpinned = [d for d in dists if d not in pins]
    if unpinned:
        raise SystemExit(f"requirements.lock pins no version of {unpinned}: run scripts/lock.sh")
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", python, "--implementation", "cp", *platforms, "-d", str(dest),
                    *(f"{d}=={pins[d]}" for d in dists)], check=True)
    return sorted(dest.glob("*.whl"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".device" / "wheels")
    parser.add_argument("--python", default=DEVICE_PYTHON, help="the device's Python version (default 3.12)")
    parser.add_argument("--check", action="store_true", help="list what is carried; download nothing")
    args = parser.parse_args(argv)
    needed = carried()
    for dist, why in needed.items():
        print(f"carry {dist}: {why}")
    if not args.check:
        wheels = download(list(needed), args.dest, args.python)
        print(f"{len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 2**20:.1f} MiB -> {args.dest}")


if __name__ == "__main__":
    main()
