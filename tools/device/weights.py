"""A backbone carried to the device in parts: its weights as bf16 safetensors, packed losslessly (the byte
planes of bf16: the sign + exponent bytes lzma-compressed, the mantissa bytes raw; the codec of
`../shared/tools/stage-model-for-device`), cut into parts whose sizes the device plan chooses, each in a folder
`.device/w<k>/` that one device call carries. On the device, `receive` appends each part in order and, after
the last, rebuilds the bf16 file byte for byte, checks its sha256, and leaves a model directory (config,
tokenizer, `model.safetensors`, `staged.json`) where `$AES_MODEL_CACHE` makes the backbone spec resolve.

    python -m tools.device.weights receive .device/w1 --into /tmp/aes/models/all-mpnet-base-v2

`receive` uses the standard library only: the device runs it before anything is installed."""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import shutil
import sys
from pathlib import Path

HEADER_BYTES = 256
PART = "part"
PART_META = "part.json"
FILES = "files"  # config and tokenizer files, carried with the first part
STAGED_MARKER = "staged.json"  # the name stages/lib/encoders/backbone.py reads (tests check they agree)
WEIGHTS = "model.safetensors"
PARTIAL = ".partial"
RECEIVED = ".received.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack(data: bytes) -> bytes:
    """`data` (bf16 safetensors) as header + lzma(odd bytes) + even bytes; `unpack` inverts it exactly."""
    even = data + (b"\0" if len(data) % 2 else b"")
    low, high = even[0::2], lzma.compress(even[1::2], preset=6)
    head = {"codec": "planes-lzma", "length": len(data), "sha256": sha256(data), "hi_bytes": len(high)}
    return json.dumps(head).encode().ljust(HEADER_BYTES) + high + low


def unpack(blob: bytes) -> bytes:
    head = json.loads(blob[:HEADER_BYTES].rstrip(b" "))
    body = blob[HEADER_BYTES:]
    high = lzma.decompress(body[:head["hi_bytes"]])
    low = body[head["hi_bytes"]:]
    data = bytearray(len(low) + len(high))
    data[0::2], data[1::2] = low, high
    data = bytes(data[:head["length"]])
    if sha256(data) != head["sha256"]:
        raise ValueError("sha256 mismatch after the join: the parts are incomplete, damaged or out of order")
    return data


def bf16_safetensors(model_dir: Path) -> bytes:
    """The model directory's `model.safetensors` with every floating tensor rounded to bf16, as file bytes."""
    import torch
    from safetensors.torch import load_file, save

    tensors = load_file(str(model_dir / WEIGHTS))
    return save({k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous()
                 for k, v in sorted(tensors.items())}, metadata={"format": "pt"})


def packed_backbone(model_dir: Path) -> tuple[bytes, dict]:
    """The packed bf16 weights and what `staged.json` will say of them."""
    data = bf16_safetensors(model_dir)
    blob = pack(data)
    return blob, {"source": str(model_dir.name), "precision": "bf16 (rounded from the checkpoint; loaded as "
                  "float32)", "weights_sha256": sha256(data), "weights_bytes": len(data), "packed_bytes": len(blob)}


def side_files(model_dir: Path) -> list[Path]:
    """Config and tokenizer files (everything but the weights)."""
    return sorted(p for p in model_dir.iterdir() if p.is_file() and p.name != WEIGHTS
                  and not p.name.endswith((".bin", ".h5", ".onnx", ".msgpack", ".pt")))


def write_parts(blob: bytes, sizes: list[int], model_dir: Path, marker: dict, root: Path) -> list[Path]:
    """Cut `blob` into parts of `sizes` bytes (the last takes the rest) under `root/w1`, `root/w2`, …; the
    first part's folder also holds the side files. Returns the part folders."""
    if sum(sizes[:-1]) >= len(blob):
        raise ValueError(f"parts {sizes} leave nothing for the last of {len(sizes)}")
    bounds, start = [], 0
    for size in sizes[:-1]:
        bounds.append((start, start + size))
        start += size
    bounds.append((start, len(blob)))
    folders = []
    for k, (lo, hi) in enumerate(bounds, 1):
        folder = root / f"w{k}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / PART).write_bytes(blob[lo:hi])
        meta = {"index": k, "of": len(bounds), "bytes": hi - lo, "sha256": sha256(blob[lo:hi]),
                "blob_sha256": sha256(blob), **({"marker": marker} if k == len(bounds) else {})}
        (folder / PART_META).write_text(json.dumps(meta, indent=2) + "\n")
        if k == 1:
            (folder / FILES).mkdir()
            for path in side_files(model_dir):
                shutil.copy2(path, folder / FILES / path.name)
        folders.append(folder)
    return folders


def receive(part_dir: Path, into: Path) -> str:
    """Append one carried part to `into`'s partial file (in order; a part already received is skipped, so a
    retried call is harmless); after the last part, join, verify and write the model directory."""
    meta = json.loads((part_dir / PART_META).read_text())
    data = (part_dir / PART).read_bytes()
    if sha256(data) != meta["sha256"]:
        raise ValueError(f"{part_dir}: part {meta['index']} damaged in transit (sha256 differs)")
    into.mkdir(parents=True, exist_ok=True)
    state_path = into / RECEIVED
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"received": 0}
    if meta["index"] == 1 and state.get("blob_sha256") != meta["blob_sha256"]:
        state = {"received": 0, "blob_sha256": meta["blob_sha256"]}  # a new staging: start over
    if meta["index"] <= state["received"]:
        return f"part {meta['index']}/{meta['of']} already received"
    if meta["index"] != state["received"] + 1 or state.get("blob_sha256") != meta["blob_sha256"]:
        raise ValueError(f"{part_dir}: part {meta['index']} of {meta['of']} arrived after part "
                         f"{state['received']} of another or the same staging; make the calls in order")
    if meta["index"] == 1:
        for path in (part_dir / FILES).iterdir():
            shutil.copy2(path, into / path.name)
    with (into / PARTIAL).open("ab" if meta["index"] > 1 else "wb") as out:
        out.write(data)
    state["received"] = meta["index"]
    state_path.write_text(json.dumps(state))
    if meta["index"] < meta["of"]:
        return f"part {meta['index']}/{meta['of']} received ({len(data) / 2**20:.1f} MiB)"
    blob = (into / PARTIAL).read_bytes()
    if sha256(blob) != meta["blob_sha256"]:
        raise ValueError(f"{into}: the joined parts differ from what was staged (sha256)")
    weights = unpack(blob)
    (into / f"{WEIGHTS}.tmp").write_bytes(weights)
    (into / f"{WEIGHTS}.tmp").replace(into / WEIGHTS)
    (into / STAGED_MARKER).write_text(json.dumps(meta["marker"], indent=2) + "\n")
    (into / PARTIAL).unlink()
    return (f"joined {into / WEIGHTS}: {len(weights) / 2**20:.1f} MiB, sha256 {meta['marker']['weights_sha256']} "
            "verified")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="receive one carried weight part on the device")
    sub = parser.add_subparsers(dest="command", required=True)
    recv = sub.add_parser("receive", help="append a part (join and verify after the last)")
    recv.add_argument("part_dir", type=Path)
    recv.add_argument("--into", type=Path, required=True, help="the model directory to build")
    args = parser.parse_args(argv)
    try:
        print(receive(args.part_dir, args.into))
    except (OSError, ValueError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
