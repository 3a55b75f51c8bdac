"""Every config file the repository ships loads into its dataclass: a typo in a key or a value
of the wrong type (in a config that is never run here, like the GPU and paper-scale ones) fails
this test rather than a researcher's first run."""

from pathlib import Path

import pytest

from idpulse.config import ConfigError, load_config
from idpulse.dic.config import DICFileConfig
from idpulse.evaluation.tables import TablesConfig
from idpulse.training.dic_loop import DICTrainConfig
from idpulse.training.extractor_loop import ExtractorTrainConfig
from idpulse.training.gan import GanTrainConfig
from idpulse.upscale import UpscaleConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
KINDS = {"upscale*.yaml": UpscaleConfig, "eval/*.yaml": TablesConfig,
         "extractor/*.yaml": ExtractorTrainConfig, "generator/*.yaml": GanTrainConfig,
         "dic/celeba*.yaml": DICFileConfig, "dic/train_*.yaml": DICTrainConfig}
FILES = [(p, cls) for pattern, cls in KINDS.items() for p in sorted(CONFIGS.glob(pattern))]


def test_every_config_file_is_covered():
    covered = {p for p, _ in FILES}
    assert covered == set(CONFIGS.rglob("*.yaml")), "a config file with no dataclass mapped in this test"


@pytest.mark.parametrize("path,cls", FILES, ids=[str(p.relative_to(CONFIGS)) for p, _ in FILES])
def test_config_file_loads(path, cls):
    cfg = load_config(cls, path)
    assert isinstance(cfg, cls)


def test_upscale_yaml_writes_out_the_defaults():
    # configs/upscale.yaml says it is upscale.py's defaults written out: keep the two in step
    assert load_config(UpscaleConfig, CONFIGS / "upscale.yaml") == UpscaleConfig()


def _bounded_keys(cls, prefix=""):
    """(dotted key, minimum) of every field of a config (and its sections) that has a lower bound."""
    import dataclasses

    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out += _bounded_keys(type(default), f"{prefix}{f.name}.")
        elif "min" in f.metadata:
            out.append((f"{prefix}{f.name}", f.metadata["min"]))
    return out


BOUNDED = [(cls, key, low) for cls in KINDS.values() for key, low in _bounded_keys(cls)]


@pytest.mark.parametrize("cls,key,low", BOUNDED, ids=[f"{c.__name__}:{k}" for c, k, _ in BOUNDED])
def test_a_size_below_its_minimum_is_an_error_naming_the_key(cls, key, low):
    with pytest.raises(ConfigError, match=f"'{key}' must be at least"):
        load_config(cls, None, [f"--{key}={low - 1}"])
    load_config(cls, None, [f"--{key}={low}"])  # the minimum itself is fine


def test_the_sizes_a_user_can_zero_are_bounded():
    keys = {k for _, k, _ in BOUNDED}
    for must in ("batch_images", "pulse.steps", "pulse.num_seeds", "pulse.retries", "batch", "pulse.eps", "batch.arc",
                 "lookalike.batch", "lookalike.pulse.steps", "meta_epochs", "steps_per_meta_epoch",
                 "generator.resolution"):
        assert must in keys, must


def test_dry_run_prints_the_resolved_config_and_exits(capsys):
    import yaml

    from idpulse.config import load_config
    from idpulse.training.extractor_loop import ExtractorTrainConfig

    with pytest.raises(SystemExit) as e:
        load_config(ExtractorTrainConfig, CONFIGS / "extractor" / "f_cpu.yaml",
                    ["--dry-run", "--lookalike.pulse.steps=7"])
    assert e.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["lookalike"]["pulse"]["steps"] == 7 and printed["run_dir"] == "runs/extractor_f"  # file <- override
    with pytest.raises(Exception, match="no_such_key"):  # a bad key is still an error, not a dry run
        load_config(ExtractorTrainConfig, None, ["--dry-run", "--no_such_key=1"])
