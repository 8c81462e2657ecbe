"""Records what a pipeline stage process reads and writes, for `tests/test_dag.py`'s check of `dvc.yaml`.

Active only when `$AES_DAG_AUDIT` names a folder and the process is a stage (`python -m stages.<name> …`): the
params it reads (dotted leaf keys of what `load_params` returned), the files it opens or renames into place, and
the parquet files pyarrow opens natively (which Python's audit events do not see). At exit one JSON line per process
goes to `$AES_DAG_AUDIT/<pid>.json`. Put this folder first on `PYTHONPATH` to enable it; it changes nothing the
stage computes."""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.machinery
import json
import os
import sys

_AUDIT_DIR = os.environ.get("AES_DAG_AUDIT")
_ARGV = list(getattr(sys, "orig_argv", []))
_STAGE = _ARGV[_ARGV.index("-m") + 1] if "-m" in _ARGV[:-1] else ""
_RECORD: dict[str, set[str]] = {"read": set(), "written": set(), "params": set()}


class _Recording(dict):
    """A mapping inside the params (e.g. `finetune.budgets`) that records the dotted key of every leaf read."""

    def __init__(self, data: dict, prefix: str = ""):
        super().__init__({k: _wrap(v, f"{prefix}{k}.") for k, v in data.items()})
        self._prefix = prefix

    def _seen(self, key: object, value: object) -> object:
        if not isinstance(value, _Recording | _RecordingModel):
            _RECORD["params"].add(f"{self._prefix}{key}")
        return value

    def __getitem__(self, key):
        return self._seen(key, super().__getitem__(key))

    def get(self, key, default=None):
        return self._seen(key, super().get(key, default)) if key in self else default

    def _keys(self) -> list:
        return list(dict.keys(self))

    def __iter__(self):  # overridden, so that dict(…) and ** go through __getitem__
        return iter(self._keys())

    def items(self):
        return [(k, self[k]) for k in self._keys()]

    def values(self):
        return [self[k] for k in self._keys()]

    def __reduce__(self):  # to a worker process (loky, spawn) as a plain mapping
        return dict, (dict(super().items()),)


class _RecordingModel:
    """A typed params section (a pydantic model) that records the dotted key of every field read from it. Its own
    properties and methods run against the recorder, so they record the fields they read; pydantic's (`model_dump`,
    `model_copy`, comparison, pickling) read the whole section and record it whole. `isinstance` sees the wrapped
    class."""

    __slots__ = ("_model", "_prefix")

    def __init__(self, model: object, prefix: str = ""):
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_prefix", prefix)

    @property
    def __class__(self):  # isinstance(recorder, Params) holds
        return type(self._model)

    def _whole(self) -> object:
        _RECORD["params"].add(self._prefix.rstrip(".") or "*")
        return self._model

    def __getattr__(self, name: str):
        model, prefix = self._model, self._prefix
        if name in type(model).model_fields:
            value = getattr(model, name)
            wrapped = _wrap(value, f"{prefix}{name}.")
            if wrapped is value:
                _RECORD["params"].add(f"{prefix}{name}")
            return wrapped
        if name.startswith("_") and not name.startswith("__"):  # a private attribute (a budget's name, the source)
            return getattr(model, name)
        own = next((vars(k)[name] for k in type(model).__mro__ if name in vars(k)), None)
        if isinstance(own, property):
            return own.fget(self)
        if callable(own) and getattr(own, "__module__", "") == type(model).__module__:
            return own.__get__(self)
        if name == "model_dump":  # `include` names the sections read; without it, the whole section
            def model_dump(*args, include=None, **kwargs):
                for field in include or ():
                    _RECORD["params"].add(f"{prefix}{field}")
                return (model if include else self._whole()).model_dump(*args, include=include, **kwargs)
            return model_dump
        return getattr(self._whole(), name)

    def __setattr__(self, name, value):
        setattr(self._model, name, value)

    def __eq__(self, other):
        return self._whole() == (other._whole() if isinstance(other, _RecordingModel) else other)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self._whole())

    def __iter__(self):
        return iter(self._whole())

    def __repr__(self):
        return repr(self._model)

    def __reduce_ex__(self, protocol):  # to a worker process as the model itself
        return self._whole().__reduce_ex__(protocol)


def _wrap(value: object, prefix: str) -> object:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return _RecordingModel(value, prefix)
    return _Recording(value, prefix) if isinstance(value, dict) else value


def _wanted() -> bool:
    return bool(_AUDIT_DIR) and _STAGE.startswith("stages.") and _STAGE.count(".") == 1


if _wanted():
    _CWD = os.getcwd()

    def _relative(path: object) -> str | None:
        try:
            text = os.fsdecode(path)  # type: ignore[arg-type]
        except TypeError:
            return None
        full = os.path.normpath(os.path.join(_CWD, text))
        if not full.startswith(_CWD + os.sep):
            return None
        relative = os.path.relpath(full, _CWD)
        parts = relative.split(os.sep)
        if any(p.startswith(".") and p.endswith(".tmp") for p in parts):  # an atomic writer's temp sibling
            return None
        return relative if relative.startswith(_ROOTS) else None

    def _hook(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], str | bytes | os.PathLike):
            path, mode, flags = args[0], args[1], args[2] if len(args) > 2 else 0
            writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR))
            relative = _relative(path)
            if relative is not None:
                _RECORD["written" if writing else "read"].add(relative)
        elif event == "os.rename" and len(args) >= 2:
            relative = _relative(args[1])
            if relative is not None:
                _RECORD["written"].add(relative)

    def _patch_config(module) -> None:
        original = module.load_params

        def load_params(*args, **kwargs):
            return _wrap(original(*args, **kwargs), "")

        module.load_params = load_params

    def _patch_pyarrow(module) -> None:
        def recorded(function):
            def wrapper(source, *args, **kwargs):
                relative = _relative(source) if isinstance(source, str | os.PathLike) else None
                if relative is not None:
                    _RECORD["read"].add(relative)
                return function(source, *args, **kwargs)
            return wrapper

        for name in ("read_table", "read_metadata", "read_schema", "ParquetFile"):
            setattr(module, name, recorded(getattr(module, name)))

    _PATCHES = {"stages.lib.core.config": _patch_config, "pyarrow.parquet": _patch_pyarrow}

    class _PatchAfterImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name not in _PATCHES:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return None
            loader, patch = spec.loader, _PATCHES[name]

            class _Loader(importlib.abc.Loader):
                def create_module(self, spec):
                    return loader.create_module(spec)

                def exec_module(self, module):
                    loader.exec_module(module)
                    patch(module)

            spec.loader = _Loader()
            return spec

    sys.meta_path.insert(0, _PatchAfterImport())
    from stages.lib.core.paths import OUTPUT_ROOTS

    _ROOTS = tuple(f"{root.as_posix()}/" for root in OUTPUT_ROOTS)
    sys.addaudithook(_hook)

    @atexit.register
    def _dump() -> None:
        entry = {"stage": os.environ.get("DVC_STAGE"), "argv": _ARGV[_ARGV.index("-m") + 1:],
                 **{k: sorted(v) for k, v in _RECORD.items()}}
        with open(os.path.join(_AUDIT_DIR, f"{os.getpid()}.json"), "w", encoding="utf-8") as fh:
            json.dump(entry, fh)
