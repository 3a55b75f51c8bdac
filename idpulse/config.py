"""YAML configs loaded into dataclasses, with dotted command-line overrides.

A config file is a nested mapping whose keys are dataclass fields; unknown keys and values
of the wrong type are errors that name the key (nanoGPT's configurator, made strict):

    cfg = load_config(UpscaleConfig, "configs/upscale.yaml", ["--pulse.steps=200"])

Every run writes `config.yaml` (the resolved config) and the git commit into its folder.
"""

from __future__ import annotations

import dataclasses
import subprocess
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import UserError

T = TypeVar("T")


class ConfigError(UserError):
    pass


def _check(tp, value, key: str):
    """Returns `value` converted to type `tp`, or raises ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            keys = [f.name for f in dataclasses.fields(tp)]
            raise ConfigError(f"config key '{key}' is a section, not a {type(value).__name__}: set its keys, e.g. "
                              f"--{key}.{keys[0]}=... (its keys: {', '.join(keys)})")
        return _build(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(a, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"config key '{key}' has a bad value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"config key '{key}' must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin is dict:
        ktp, vtp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return {_check(ktp, k, f"{key}.{k}"): _check(vtp, v, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool) and item is not Any:
            value = [value]  # `--pulse.bad_noise_layers=7` means [7]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        return [_check(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML reads 2e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"config key '{key}' must be {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value


def at_least(low: float, default):
    """A dataclass field whose value must be >= `low` (sizes, counts, steps): a config that sets
    it lower is an error naming the key, not a crash (or a silent no-op) later."""
    return dataclasses.field(default=default, metadata={"min": low})


def one_of(names, default):
    """A string field whose value must be a name in a registry: `names()` gives the names when a
    config is checked (so a dataset or table registered later is accepted without editing here)."""
    if callable(default):  # a list default: a factory
        return dataclasses.field(default_factory=default, metadata={"choices": names})
    return dataclasses.field(default=default, metadata={"choices": names})


def _check_bounds(f: dataclasses.Field, value, key: str) -> None:
    low = f.metadata.get("min")
    if low is not None and isinstance(value, (int, float)) and value < low:
        raise ConfigError(f"config key '{key}' must be at least {low:g}, got {value!r}")
    choices = f.metadata.get("choices")
    if choices is not None:
        names = list(choices())
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v not in names:
                raise ConfigError(f"config key '{key}' must be one of {names}, got {v!r}")


def _build(cls: type[T], data: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        moved = getattr(cls, "MOVED", {}).get(unknown[0])  # a key an earlier version had: say where it went
        if moved:
            raise ConfigError(f"config key '{prefix}{unknown[0]}' is gone: {moved}")
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}' (valid keys under "
                          f"'{prefix or '<top>'}': {', '.join(sorted(fields))})")
    data = dict(data)
    for k, v in data.items():  # a section set in part keeps the rest of its field's default, e.g. the
        f = fields[k]          # tables' `pulse: PulseConfig(num_seeds=1)` under `--pulse.steps=50`
        if isinstance(v, dict) and f.default_factory is not dataclasses.MISSING:
            base = f.default_factory()
            if dataclasses.is_dataclass(base):
                data[k] = _merge(dataclasses.asdict(base), v)
    kwargs = {k: _check(hints[k], v, prefix + k) for k, v in data.items()}
    for k, v in kwargs.items():
        _check_bounds(fields[k], v, prefix + k)
    return cls(**kwargs)


def validate(cfg, prefix: str = "") -> None:
    """Checks the bounds of a config built in Python (`load_config` checks those it builds)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            validate(value, f"{prefix}{f.name}.")
        else:
            _check_bounds(f, value, prefix + f.name)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(args: list[str]) -> dict:
    """`["--pulse.steps=200", "--device=cuda"]` -> {"pulse": {"steps": 200}, "device": "cuda"}."""
    out: dict = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"bad override {arg!r}: write it as --section.key=value")
        key, _, raw = arg[2:].partition("=")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.replace("-", "_").split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict:
    """A config file: the path as given, else the bundled one of that name (`paths.resolve`)."""
    from .paths import resolve

    given, path = path, resolve(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {given}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys")
    return data


DRY_RUN = ("--dry-run", "--dry_run")


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | dict | None = None) -> T:
    """Dataclass defaults <- YAML file <- overrides, type-checked.

    Every script passes its command line's `--key=value` overrides here, so every script takes
    `--dry-run` too: the resolved config is printed as YAML (what the run folder's `config.yaml`
    would hold) and the command exits without doing anything."""
    dry = isinstance(overrides, list) and any(a in DRY_RUN for a in overrides)
    if dry:
        overrides = [a for a in overrides if a not in DRY_RUN]
    data = read_yaml(path) if path else {}
    if overrides:
        data = _merge(data, overrides if isinstance(overrides, dict) else parse_overrides(overrides))
    cfg = _build(cls, data)
    if dry:
        print_config(cfg, path)
        raise SystemExit(0)
    return cfg


def print_config(cfg, path: str | Path | None = None) -> None:
    """The resolved config as YAML on stdout (`--dry-run`), headed by where it came from."""
    print(f"# {type(cfg).__name__}: defaults <- {path or 'no config file'} <- the command line")
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


NOT_SET = "<not set>"


def first_difference(old: dict, new: dict, skip: set[str] = frozenset()) -> tuple[str, object, object] | None:
    """The first dotted key (sorted) where two nested settings dicts differ, with both values
    (`NOT_SET` where one lacks it), or None; keys in `skip`, or under a top-level key in it, are
    not compared."""
    a, b = _flatten(old), _flatten(new)
    for key in sorted(set(a) | set(b)):
        if key in skip or key.split(".")[0] in skip:
            continue
        if a.get(key, NOT_SET) != b.get(key, NOT_SET):
            return key, a.get(key, NOT_SET), b.get(key, NOT_SET)
    return None


def check_resume(saved: dict, cfg, state_path: str | Path, may_change: set[str] = frozenset()) -> None:
    """A run resumes only with the settings it was started with (its data, model, schedule...):
    otherwise a one-line error naming the first setting that changed, instead of a size mismatch
    deep in the loop or a silently different run. `may_change`: keys that do not alter the result
    (the device, logging intervals) or that extend the run (more epochs). A setting the saved run does
    not record (newer than the run) counts as its default, the value new settings take for old behaviour."""
    try:  # a setting added to the code after the run began: the run had its default, as the code then did
        defaults = _flatten(to_dict(type(cfg)()))
    except TypeError:  # a config with required fields: no defaults to fill in
        defaults = {}
    old = _flatten(saved)
    old = {**{k: v for k, v in defaults.items() if k not in old}, **old}  # (flat, dotted keys)
    diff = first_difference(old, to_dict(cfg), may_change)
    if diff is not None:
        key, was, now = diff
        raise ConfigError(f"{state_path} was started with {key}={was!r}, this run asks for {now!r}: resume with "
                          "the run's own settings (its config.yaml), or give another --run_dir")


def git_commit(cwd: str | Path | None = None) -> str:
    """The commit of the code that ran, with '+dirty' for uncommitted changes; 'unknown' outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def write_run_info(folder: str | Path, cfg, extra: dict | None = None) -> None:
    """Writes `config.yaml` (resolved config, loadable again with --config) and `run.yaml`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info = {"git_commit": git_commit(), **(extra or {})}  # before writing: a tracked run folder is not "dirty"
    (folder / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    (folder / "run.yaml").write_text(yaml.safe_dump(info, sort_keys=False))
