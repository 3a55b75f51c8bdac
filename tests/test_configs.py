"""Every config file the repository ships loads into its dataclass: a typo in a key or a value
of the wrong type (in a config that is never run here, like the GPU and paper-scale ones) fails
this test rather than a researcher's first run."""

from pathlib import Path

import pytest

from idpulse.config import load_config
from idpulse.evaluation.tables import TablesConfig
from idpulse.training.extractor_loop import ExtractorTrainConfig
from idpulse.training.gan import GanTrainConfig
from idpulse.upscale import UpscaleConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
KINDS = {"upscale*.yaml": UpscaleConfig, "eval/*.yaml": TablesConfig,
         "extractor/*.yaml": ExtractorTrainConfig, "generator/*.yaml": GanTrainConfig}
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
