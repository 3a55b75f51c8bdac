"""DIC training: both stages run and write a loadable dic.pt; a run stopped mid-stage resumes to the
same weights as an uninterrupted one; a changed setting on resume is one line; the hourglass is
frozen for `freeze_hourglass` iterations and trains after them. Tiny model, tiny synthetic CelebA."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from idpulse.config import ConfigError, load_config
from idpulse.data.synthetic import celeba_utkface
from idpulse.dic import DICFileConfig, load_dic
from idpulse.dic.landmarks import _save
from idpulse.errors import CheckpointError
from idpulse.training import dic_loop
from idpulse.training.dic_loop import DICTrainConfig, training_loop

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model.lr_size=4", "--model.features=4", "--model.groups=1", "--model.steps=2",
        "--model.projection_scale=2", "--model.fusion_blocks=1", "--model.hg_features=8", "--model.hg_levels=2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny CelebA (6 training crops at 96 px) and a 68-point cache that keeps 5 of them."""
    root = celeba_utkface(tmp_path_factory.mktemp("faces"), n_ids=2, per_id=3, utk_images=1)
    names = sorted(p.name for p in (root / "celeba" / "images").iterdir())
    rng = np.random.default_rng(0)
    points = [rng.uniform(20, 76, (68, 2)).astype(np.float32) for _ in names]
    errors = [1.0] * (len(names) - 1) + [9.0]  # the last one disagrees with MTCNN: not kept at 5 px
    cache = root / "celeba_68.npz"
    _save(cache, names, points, errors, 5.0)
    return root / "celeba", cache


def _overrides(data, run, **kw):
    celeba, cache = data
    base = {"run_dir": run, "device": "cpu", "threads": 1, "batch": 2, "hg_iterations": 3, "iterations": 6,
            "freeze_hourglass": 2, "milestones": [2, 4], "checkpoint_every": 1, "log_every": 1,
            "data.root": celeba, "landmarks.cache": cache, **kw}
    return TINY + [f"--{k}={v}" for k, v in base.items()]


def _train(data, run, **kw):
    return training_loop(load_config(DICTrainConfig, None, _overrides(data, run, **kw)))


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def _stopped_after_saves(monkeypatch, n):
    """Makes the run die (as if killed) right after its n-th checkpoint."""
    calls = []
    real = dic_loop.atomic_save

    def save(obj, path):
        real(obj, path)
        calls.append(path)
        if len(calls) == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(dic_loop, "atomic_save", save)


def test_both_stages_write_a_dic_that_loads(data, tmp_path):
    out = _train(data, tmp_path / "run")
    st = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert (st["stage"], st["iteration"]) == ("dic", 6)
    assert st["sched"]["last_epoch"] == 6 and st["opt"]["param_groups"][0]["lr"] == pytest.approx(1e-4 / 4)
    assert "images: 5" in (tmp_path / "run" / "run.yaml").read_text()  # the crop the cache rejects is left out
    assert list((tmp_path / "run" / "tb").iterdir())
    model = load_dic(out)
    assert model.cfg.lr_size == 4 and not model.training
    assert model.upscale(torch.rand(1, 3, 4, 4)).shape == (1, 3, 32, 32)
    bad = torch.load(out, weights_only=True)
    bad["model"]["extra.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="unexpected keys: extra.weight"):
        load_dic(tmp_path / "bad.pt")


@pytest.mark.parametrize("saves", [2, 5], ids=["stopped-in-pretraining", "stopped-in-dic"])
def test_stopped_run_resumes_to_the_same_weights(data, tmp_path, monkeypatch, saves, capsys):
    full = _train(data, tmp_path / "full")
    with monkeypatch.context() as m:
        _stopped_after_saves(m, saves)
        with pytest.raises(KeyboardInterrupt):
            _train(data, tmp_path / "stopped")
    st = torch.load(tmp_path / "stopped" / "state.pt", weights_only=True)
    assert (st["stage"], st["iteration"]) == (("hourglass", 2) if saves == 2 else ("dic", 2))
    assert not (tmp_path / "stopped" / "dic.pt").exists()
    resumed = _train(data, tmp_path / "stopped")
    assert "resuming" in capsys.readouterr().out
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa = torch.load(tmp_path / "full" / "state.pt", weights_only=True)
    sb = torch.load(tmp_path / "stopped" / "state.pt", weights_only=True)
    for k, v in sa["opt"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], sb["opt"]["state"][k]["exp_avg_sq"]), k
    assert sa["sched"] == sb["sched"] and sa["opt"]["param_groups"] == sb["opt"]["param_groups"]


def test_a_longer_run_resumes_and_a_changed_setting_is_one_line(data, tmp_path):
    run = tmp_path / "run"
    _train(data, run, iterations=2)
    before = (run / "state.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"started with lr=0\.0001, this run asks for 0\.001"):
        _train(data, run, iterations=2, lr=1e-3)
    assert (run / "state.pt").read_bytes() == before
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_dic.py"),
                        *_overrides(data, run, iterations=2, **{"model.features": 8})],
                       capture_output=True, text=True, timeout=300)
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and len(err) == 1 and " model.features=4" in err[0] and "Traceback" not in r.stderr, \
        r.stderr[-2000:]
    _train(data, run, iterations=3)  # more iterations: the same run, longer
    assert torch.load(run / "state.pt", weights_only=True)["iteration"] == 3


def test_pretraining_trains_only_the_hourglass_which_stays_frozen_then_trains(data, tmp_path):
    init = _weights(_train(data, tmp_path / "init", hg_iterations=0, iterations=0))
    pre = _weights(_train(data, tmp_path / "run", iterations=0))
    hg = [k for k in init if k.startswith("hourglass.")]
    assert hg and all(not torch.equal(init[k], pre[k]) for k in hg if k.endswith(".weight"))
    assert all(torch.equal(init[k], pre[k]) for k in init if k not in hg)  # stage 1 leaves the SR branch alone
    frozen = _weights(_train(data, tmp_path / "run", iterations=2))  # freeze_hourglass=2
    assert all(torch.equal(pre[k], frozen[k]) for k in hg)
    assert not torch.equal(pre["stem.0.0.weight"], frozen["stem.0.0.weight"])  # the SR branch trains meanwhile
    after = _weights(_train(data, tmp_path / "run", iterations=3))
    assert all(not torch.equal(frozen[k], after[k]) for k in hg if k.endswith(".weight"))


@pytest.mark.parametrize("size", ["64_cpu", "128_paper"])
def test_train_configs_hold_the_model_files_sections(size):
    train = load_config(DICTrainConfig, ROOT / "configs" / "dic" / f"train_celeba{size}.yaml")
    model = load_config(DICFileConfig, ROOT / "configs" / "dic" / f"celeba{size}.yaml")
    assert (train.model, train.data, train.landmarks) == (model.model, model.data, model.landmarks)


def test_dicgan_config_holds_the_paper_models_sections():
    train = load_config(DICTrainConfig, ROOT / "configs" / "dic" / "train_dicgan_celeba128_paper.yaml")
    model = load_config(DICFileConfig, ROOT / "configs" / "dic" / "celeba128_paper.yaml")
    assert (train.model, train.data, train.landmarks) == (model.model, model.data, model.landmarks)
    assert train.gan.enabled and train.gan.init.endswith("dic_celeba128_paper/dic.pt")


def test_dicgan_from_a_dic_of_other_sizes_is_one_line(data, tmp_path):
    init = _train(data, tmp_path / "dic")
    with pytest.raises(ConfigError, match="gan.init .* other sizes"):
        _train(data, tmp_path / "gan", hg_iterations=0, iterations=0,
               **_gan(tmp_path, **{"gan.init": init, "model.features": 8}))


def test_torchrun_two_ranks_on_cpu(data, tmp_path):
    import os

    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(ROOT / "scripts" / "train_dic.py"),
           *_overrides(data, run, hg_iterations=2, iterations=2)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    st = torch.load(run / "state.pt", weights_only=True)
    assert len(st["rng"]) == 2 and not torch.equal(st["rng"][0]["torch"], st["rng"][1]["torch"])
    assert (st["stage"], st["iteration"]) == ("dic", 2)
    assert "world_size: 2" in (run / "run.yaml").read_text()
    load_dic(run / "dic.pt")


def _gan(tmp_path, **kw):
    """Overrides of a tiny DICGAN stage (F: a random tiny extractor, D: a narrow discriminator)."""
    from idpulse.extractor import FaceExtractor, save_extractor

    f = tmp_path / "f.pt"
    if not f.exists():
        torch.manual_seed(0)
        save_extractor(FaceExtractor(width=0.125), f)
    return {"gan.enabled": True, "gan.iterations": 2, "gan.feature_net": f, "gan.d_fmap_base": 64,
            "gan.d_fmap_max": 16, "gan.milestones": [1], **kw}


def test_dicgan_fine_tunes_the_sr_branch_with_the_hourglass_frozen(data, tmp_path):
    dic = _weights(_train(data, tmp_path / "dic"))
    gan = _weights(_train(data, tmp_path / "gan", **_gan(tmp_path)))
    st = torch.load(tmp_path / "gan" / "state.pt", weights_only=True)
    assert (st["stage"], st["iteration"]) == ("dicgan", 2)
    assert st["gan"]["sched_g"]["last_epoch"] == 2
    assert st["gan"]["opt_d"]["param_groups"][0]["lr"] == pytest.approx(5e-5)
    assert st["gan"]["D"]  # the discriminator is saved with the run
    hg = [k for k in dic if k.startswith("hourglass.")]
    assert all(torch.equal(dic[k], gan[k]) for k in hg)  # the same first two stages, then the hourglass frozen
    assert not torch.equal(dic["stem.0.0.weight"], gan["stem.0.0.weight"])  # the SR branch fine-tuned
    meta = torch.load(tmp_path / "gan" / "dic.pt", weights_only=True)["meta"]
    assert meta["dicgan_iterations"] == 2 and meta["iterations"] == 6
    # from a trained DIC: stages 1-2 are skipped, the DIC's weights are the start
    init = tmp_path / "dic" / "dic.pt"
    from_init = _weights(_train(data, tmp_path / "init", hg_iterations=0, iterations=0,
                                **_gan(tmp_path, **{"gan.init": init})))
    assert all(torch.equal(dic[k], from_init[k]) for k in hg)  # the trained DIC's hourglass, kept frozen
    assert not torch.equal(dic["stem.0.0.weight"], from_init["stem.0.0.weight"])
    st = torch.load(tmp_path / "init" / "state.pt", weights_only=True)
    assert (st["stage"], st["iteration"]) == ("dicgan", 2)


def test_dicgan_resumes_to_the_same_weights(data, tmp_path, monkeypatch):
    full = _weights(_train(data, tmp_path / "full", **_gan(tmp_path)))
    with monkeypatch.context() as m:
        _stopped_after_saves(m, 10)  # 3 pretraining + 6 DIC checkpoints, then DICGAN's first
        with pytest.raises(KeyboardInterrupt):
            _train(data, tmp_path / "stopped", **_gan(tmp_path))
    st = torch.load(tmp_path / "stopped" / "state.pt", weights_only=True)
    assert (st["stage"], st["iteration"]) == ("dicgan", 1)
    resumed = _weights(_train(data, tmp_path / "stopped", **_gan(tmp_path)))
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
    a = torch.load(tmp_path / "full" / "state.pt", weights_only=True)["gan"]
    b = torch.load(tmp_path / "stopped" / "state.pt", weights_only=True)["gan"]
    for k in a["D"]:
        assert torch.equal(a["D"][k], b["D"][k]), k


def test_a_state_from_before_dicgan_resumes(data, tmp_path):
    run = tmp_path / "run"
    _train(data, run, iterations=2)
    st = torch.load(run / "state.pt", weights_only=True)
    del st["config"]["gan"]  # as a run started before the gan section existed saved it
    torch.save(st, run / "state.pt")
    _train(data, run, iterations=3)
    assert torch.load(run / "state.pt", weights_only=True)["iteration"] == 3
