"""The tables hold no image set: rows are lazy Results, faces are read batch by batch, and the
alignment follows control.align (one choice, align.build_align)."""

import torch

from idpulse.align import FixedAlign
from idpulse.data import CELEBA_ATTRIBUTES
from idpulse.evaluation.judges import Judge
from idpulse.evaluation.table_cache import Cache, Results, cache_settings, run_strategy
from idpulse.evaluation.table_stream import angles, embed, judge_predict
from idpulse.evaluation.tables import TablesConfig
from idpulse.extractor import FaceExtractor, angle_deg
from idpulse.pulse.config import PulseConfig


class Recording:
    """A loader idx -> (b, 3, R, R) of fixed random faces that records each batch's size."""

    def __init__(self, n: int, res: int):
        self.faces = torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(1))
        self.sizes: list[int] = []

    def __call__(self, idx):
        self.sizes.append(len(idx))
        return self.faces[list(idx)]


def test_run_strategy_reads_faces_per_batch_and_returns_a_lazy_handle(tmp_path, tiny_generator):
    cfg = TablesConfig(batch=2, thumbnail_size=4, pulse=PulseConfig(num_seeds=1, steps=1, retries=0))
    load = Recording(5, tiny_generator.resolution)
    cache = Cache(tmp_path / "cache")
    items = [f"face-{i}" for i in range(5)]
    seen = []

    def controls_for(idx, faces):  # the batch's own faces come with its positions
        seen.append((list(idx), faces.shape))
        return None

    res = run_strategy(tiny_generator, load, items, "pulse", controls_for, cache, cfg)
    assert isinstance(res, Results) and len(res) == 5 and res.keys == [f"pulse__{i}" for i in items]
    assert max(load.sizes) == 2 and sum(load.sizes) == 5  # never all faces at once
    assert [s[1][0] for s in seen] == [2, 2, 1] and seen[0][1][1:] == (3, 16, 16)
    tensors = [v for v in vars(res).values() if isinstance(v, torch.Tensor)]
    assert [t.shape for t in tensors] == [(5,)] and res.accepted.dtype == torch.bool  # no images held
    assert res.load([3]).shape == (1, 3, 16, 16)
    # acceptance comes from the JSON: the PNGs are not read when a resumed row is returned
    for k in res.keys:
        (cache.folder / f"{k}.png").unlink()
    again = run_strategy(tiny_generator, load, items, "pulse", controls_for, cache, cfg)
    assert torch.equal(again.accepted, res.accepted) and sum(load.sizes) == 5  # nothing searched or read


def test_streamed_measures_match_one_batch_and_stay_batched():
    torch.manual_seed(0)
    load = Recording(7, 32)
    judge = Judge("attr", CELEBA_ATTRIBUTES, 16).eval()
    pred = judge_predict(judge, load, 7, 3, "cpu")
    assert max(load.sizes) == 3 and torch.equal(pred, judge.predict(load.faces))
    ext, align = FaceExtractor(width=0.125).eval(), FixedAlign(32)
    load.sizes.clear()
    (feats,) = embed([ext], align, load, 7, 3, "cpu")
    assert max(load.sizes) == 3 and feats.shape == (7, 512)
    with torch.no_grad():
        direct = ext(align(load.faces))
    a = angles(feats, feats.flip(0))
    assert a.shape == (7,) and torch.allclose(a.double(), angle_deg(direct, direct.flip(0)).double(), atol=1e-3)


def test_the_cache_records_a_detected_alignment():
    """(build_align's choice itself: tests/test_align.py.)"""
    cfg = TablesConfig()
    cfg.generator.random_init = True  # no files to hash for the generator
    cfg.f_arc = cfg.f = cfg.race_judge = cfg.attr_judge = __file__
    assert "align" not in cache_settings(cfg, "fixed")  # as every earlier cache was made
    assert cache_settings(cfg, "detected")["align"] == "detected"
    assert cache_settings(cfg, "detected")["detect"] == {"every": 10, "size": 256}
