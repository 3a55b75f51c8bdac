from dataclasses import dataclass, field

import pytest

from idpulse.config import ConfigError, load_config, parse_overrides, to_dict, write_run_info


@dataclass
class Inner:
    steps: int = 100
    eps: float = 2e-3
    layers: list[int] = field(default_factory=lambda: [-1])
    name: str = "adam"


@dataclass
class Outer:
    device: str = "cpu"
    inner: Inner = field(default_factory=Inner)
    flag: bool = False


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("device: cuda\ninner:\n  steps: 50\n  eps: 5e-3\n")
    cfg = load_config(Outer, p, ["--inner.steps=200", "--flag=true", "--inner.layers=7"])
    assert cfg.device == "cuda" and cfg.inner.steps == 200 and cfg.inner.eps == 5e-3
    assert cfg.flag is True and cfg.inner.layers == [7] and cfg.inner.name == "adam"


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="inner.stepz"):
        load_config(Outer, None, ["--inner.stepz=3"])
    p = tmp_path / "c.yaml"
    p.write_text("devize: cpu\n")
    with pytest.raises(ConfigError, match="devize"):
        load_config(Outer, p)


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="inner.steps"):
        load_config(Outer, None, ["--inner.steps=many"])
    with pytest.raises(ConfigError, match="flag"):
        load_config(Outer, None, {"flag": 3})
    with pytest.raises(ConfigError, match="inner.steps"):
        load_config(Outer, None, {"inner": {"steps": 1.5}})


def test_int_is_accepted_as_float():
    assert load_config(Outer, None, ["--inner.eps=1"]).inner.eps == 1.0


def test_bad_override_syntax():
    with pytest.raises(ConfigError):
        parse_overrides(["inner.steps=3"])
    with pytest.raises(ConfigError):
        parse_overrides(["--inner.steps"])


def test_run_info_round_trips(tmp_path):
    cfg = load_config(Outer, None, ["--inner.steps=7"])
    write_run_info(tmp_path, cfg, {"note": "x"})
    again = load_config(Outer, tmp_path / "config.yaml")
    assert to_dict(again) == to_dict(cfg)
    assert "git_commit" in (tmp_path / "run.yaml").read_text()


def test_a_value_where_a_section_belongs_names_the_section_and_its_keys():
    """`--generator=PATH` where `generator:` is a section (as it became for the extractor's config)."""
    with pytest.raises(ConfigError, match=r"'inner' is a section, not a str: .*--inner.steps=.*steps, eps, layers"):
        load_config(Outer, None, ["--inner=fast"])


def test_a_section_set_in_part_keeps_its_fields_default():
    """`--pulse.steps=50` on the tables changes the steps only: the section's other values stay its
    field's default (one start per face), not the section class's (four)."""
    from idpulse.evaluation.tables import TablesConfig
    from idpulse.training.extractor_loop import ExtractorTrainConfig

    cfg = load_config(TablesConfig, None, ["--pulse.steps=50"])
    assert (cfg.pulse.steps, cfg.pulse.num_seeds) == (50, 1)
    cfg = load_config(ExtractorTrainConfig, None, ["--lookalike.pulse.eps=0.01", "--batch.siam=3"])
    assert (cfg.lookalike.pulse.eps, cfg.lookalike.pulse.num_seeds, cfg.batch.siam, cfg.batch.arc) == (0.01, 1, 3, 64)


def test_resume_takes_a_setting_newer_than_the_run_at_its_default():
    """check_resume: a setting the saved run does not record (added to the code since) counts as its
    default, so an old run resumes with it at the default and is refused, naming it, with any other value."""
    from idpulse.config import check_resume

    saved = to_dict(Outer())
    del saved["flag"], saved["inner"]["name"]  # a run started before these settings existed
    check_resume(saved, Outer(), "state.pt")
    with pytest.raises(ConfigError, match=r"state.pt was started with flag=False, this run asks for True"):
        check_resume(saved, Outer(flag=True), "state.pt")
    with pytest.raises(ConfigError, match=r"inner.name='adam', this run asks for 'sgd'"):
        check_resume(saved, Outer(inner=Inner(name="sgd")), "state.pt")
    with pytest.raises(ConfigError, match=r"inner.steps=100, this run asks for 5"):  # recorded settings as before
        check_resume(saved, Outer(inner=Inner(steps=5)), "state.pt")
