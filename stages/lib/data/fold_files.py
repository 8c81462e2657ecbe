"""The materialised folds on disk: `data/folds/<scheme>/fold_<k>/{train,val}.parquet` (one place for the layout)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from stages.lib.core.errors import InputError
from stages.lib.core.paths import FOLDS_DIR

SPLITS = ("train", "val")
_FOLD_NAME = re.compile(r"fold_(\d+)")


def fold_file(scheme: str, fold: int, split: str, root: Path = FOLDS_DIR) -> Path:
    """Path of one split (`train` or `val`) of one fold."""
    return root / scheme / f"fold_{fold}" / f"{split}.parquet"


def write_fold(root: Path, scheme: str, fold: int, train: pd.DataFrame, val: pd.DataFrame) -> None:
    """Write a fold's two tables under `root` (the caller makes the whole tree atomic)."""
    for split, frame in zip(SPLITS, (train, val), strict=True):
        path = fold_file(scheme, fold, split, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)


def read_fold(scheme: str, fold: int, root: Path = FOLDS_DIR) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fold's training and validation essays; a missing file fails naming it."""
    frames = []
    for split in SPLITS:
        path = fold_file(scheme, fold, split, root)
        if not path.is_file():
            raise InputError(f"{path}: fold file not found (run the folds stage)")
        frames.append(pd.read_parquet(path))
    return frames[0], frames[1]


def scheme_folds(scheme: str, root: Path = FOLDS_DIR) -> list[int]:
    """The fold numbers materialised for a scheme, in order; none fails naming the directory."""
    folds = sorted(int(m.group(1)) for p in (root / scheme).glob("fold_*") if (m := _FOLD_NAME.fullmatch(p.name)))
    if not folds:
        raise InputError(f"{root / scheme}: no fold directories (run the folds stage)")
    return folds
