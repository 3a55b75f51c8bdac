"""Control losses (Eq. 5-8) plugged into the search, with rejection and retry."""

import pytest
import torch

from idpulse.align import FixedAlign
from idpulse.control import ControlConfig, Controls, controlled_search, objective_text, parse_attributes, race_index
from idpulse.errors import UserError
from idpulse.extractor import FaceExtractor
from idpulse.pulse import pulse_search


@pytest.fixture
def extractor():
    torch.manual_seed(0)
    return FaceExtractor(backbone="iresnet18", width=0.125, race_classes=["White", "Black", "East Asian"],
                         attribute_names=["Smiling", "Male"]).eval()


def test_names_are_checked():
    assert race_index("east asian", ["White", "East Asian"]) == 1
    with pytest.raises(UserError, match="knows: White, East Asian"):
        race_index("Martian", ["White", "East Asian"])
    assert parse_attributes(["Male=0", "Smiling=1"], ["Smiling", "Male"]) == {1: 0, 0: 1}
    with pytest.raises(UserError, match="valid names: Smiling, Male"):
        parse_attributes(["Smiles=1"], ["Smiling", "Male"])
    with pytest.raises(UserError, match="NAME=1"):
        parse_attributes(["Smiling=yes"], ["Smiling", "Male"])


def test_attribute_control_lowers_its_loss(tiny_generator, extractor):
    G = tiny_generator
    cfg = ControlConfig(attr_weight=20.0)
    ctl = Controls(extractor, FixedAlign(G.resolution), cfg, attrs=["Smiling=1"])
    thumbs = torch.rand(2, 3, 4, 4)
    plain, _, _ = controlled_search(G, thumbs, None, num_seeds=2, steps=25, eps=0.05)
    steered, ok, _ = controlled_search(G, thumbs, ctl, num_seeds=2, steps=25, eps=0.05)
    with torch.no_grad():
        feats_plain = extractor(FixedAlign(16)(plain.images.flatten(0, 1)))
    plain_attr = extractor.attr_head.requested_loss(feats_plain, {0: 1})
    assert steered.extra["attr"].mean() < plain_attr.mean()
    assert torch.equal(ok, steered.success & (steered.extra["attr"] <= cfg.attr_max))
    d = ctl.describe(steered.images[0])
    assert set(d[0]["attribute_probs"]) == {"Smiling"} and set(d[0]["race_probs"]) == {"White", "Black", "East Asian"}


def test_identity_and_race_terms_and_report(tiny_generator, extractor):
    G = tiny_generator
    targets = torch.rand(2, 3, 112, 112)
    ctl = Controls(extractor, FixedAlign(G.resolution), ControlConfig(), targets=targets, race="Black")
    assert ctl.used == ["sim", "race"]
    res, ok, seeds = controlled_search(G, torch.rand(1, 3, 4, 4), ctl, num_seeds=2, steps=3)
    assert set(res.extra) == {"sim", "race"} and ok.shape == (1, 2) and seeds.tolist() == [[0, 1]]
    d = ctl.describe(res.images[0])
    assert len(d[0]["target_angles_deg"]) == 2


def test_rejected_results_are_retried_with_new_seeds(tiny_generator, extractor):
    G = tiny_generator
    impossible = ControlConfig(attr_max=-1.0)  # no result can pass
    ctl = Controls(extractor, FixedAlign(G.resolution), impossible, attrs=["Male=1"])
    calls = []
    thumbs = torch.rand(2, 3, 4, 4)
    res, ok, seeds = controlled_search(G, thumbs, ctl, retries=2, num_seeds=2, steps=2,
                                       progress=lambda step, rec: calls.append(step))
    assert not ok.any()  # reported honestly as rejected
    assert len(calls) == 3 * 2  # the first search and two retries, 2 steps each
    assert seeds.min() >= 0 and seeds.max() <= 5  # slots may hold results of later seeds
    assert torch.isfinite(res.total).all()
    # each slot's recorded start is the one whose search produced the kept result: that face's own
    for n in range(2):
        for k in range(2):
            s = int(seeds[n, k])
            alone = pulse_search(G, thumbs[n:n + 1], first_start=s, steps=2, extra_losses=ctl.terms())
            assert torch.allclose(alone.total[0, 0], res.total[n, k], rtol=1e-4)
    # a retry starts each face afresh: the two faces' retried starts differ from each other's
    firsts = [pulse_search(G, thumbs[n:n + 1], first_start=2, steps=1).history[0]["TOTAL"] for n in range(2)]
    assert not torch.allclose(firsts[0], firsts[1])


def test_per_image_requests_use_each_images_own_target_and_class(extractor):
    align = FixedAlign(16)
    targets = torch.rand(2, 3, 112, 112)
    ctl = Controls(extractor, align, ControlConfig(), targets=targets, race=["White", "Black"],
                   attrs=[["Smiling=1"], []], per_image=True)
    feats = torch.randn(4, 512)  # 2 images x 2 seeds, image-major
    with torch.no_grad():
        tf = extractor(targets)
    from idpulse.extractor import angle_deg, similarity_loss

    want_sim = similarity_loss(angle_deg(feats, tf.repeat_interleave(2, 0)), 1.0, threshold=extractor.theta_thr)
    assert torch.allclose(ctl.loss("sim", feats), want_sim, atol=1e-5)
    want_race = extractor.race_head.loss(feats, torch.tensor([0, 0, 1, 1]))
    assert torch.allclose(ctl.loss("race", feats), want_race)
    attr = ctl.loss("attr", feats)
    assert torch.allclose(attr[:2], extractor.attr_head.requested_loss(feats[:2], {0: 1})) and (attr[2:] == 0).all()


def test_controlled_objective_is_pulses_plus_the_control_terms(tiny_generator, extractor):
    """Eq. 8: the control terms are added to PULSE's objective and nothing else changes: L_DS keeps
    the caller's weight, and a control of weight 0 gives plain PULSE's search exactly."""
    G = tiny_generator
    thumbs = torch.rand(2, 3, 4, 4)
    for w in (100.0, 300.0):
        cfg = ControlConfig()
        ctl = Controls(extractor, FixedAlign(G.resolution), cfg, race="Black")
        res, _, _ = controlled_search(G, thumbs, ctl, steps=3, eps=1e-9, ds_weight=w)
        want = w * res.ds_loss + 0.05 * res.geocross + cfg.race_weight * res.extra["race"]
        assert torch.allclose(res.total, want, rtol=1e-4)
    zero = Controls(extractor, FixedAlign(G.resolution), ControlConfig(race_weight=0.0, race_max=1e9), race="Black")
    plain, ok_plain, _ = controlled_search(G, thumbs, None, steps=5, retries=1, num_seeds=2)
    steered, _, _ = controlled_search(G, thumbs, zero, steps=5, retries=1, num_seeds=2)
    assert torch.equal(plain.images, steered.images) and torch.equal(plain.total, steered.total)
    assert torch.equal(ok_plain, plain.success)  # plain PULSE is accepted on eps alone
    assert objective_text(zero, ds_weight=100.0) == "100*L_DS(L2) + 0.05*GEOCROSS + 0*L_race (Eq. 8)"
    assert objective_text(None) == "100*L_DS(L2) + 0.05*GEOCROSS (Eq. 3)"


def test_a_retry_of_some_images_uses_those_images_requests(tiny_generator, extractor):
    G = tiny_generator

    class RejectSecondOnce(Controls):  # the first search accepts image 0 only, so image 1 alone is retried
        first = [True]

        def accepted(self, res):
            if self.first.pop() if self.first else False:
                return torch.tensor([[True], [False]])
            return super().accepted(res)

    targets = torch.rand(2, 3, 112, 112)
    ctl = RejectSecondOnce(extractor, FixedAlign(G.resolution), ControlConfig(), targets=targets,
                           race=["White", "Black"], attrs=[["Smiling=1"], ["Male=0"]], per_image=True)
    rows = []
    res, ok, seeds = controlled_search(G, torch.rand(2, 3, 4, 4), ctl, retries=1, steps=2,
                                       progress=lambda step, rec: rows.append(len(rec["TOTAL"])))
    assert rows == [2, 2, 1, 1]  # the retry searched one thumbnail, with one image's requests
    assert seeds[0, 0] == 0 and seeds[1, 0] == 1
    sub = ctl.subset([1])
    assert torch.equal(sub.value("sim"), ctl.value("sim")[1:]) and sub.value("race").tolist() == [1]
    assert sub.value("attr") == [{1: 0}] and ctl.value("race").tolist() == [0, 1]  # the original is untouched


def test_a_new_control_is_one_registered_class(tiny_generator, extractor):
    """A control loss registered from outside the package is built from its request keyword, takes
    its weight and threshold from the config's `weights` / `thresholds`, enters Eq. 8's objective
    and the acceptance test, and follows a retry's subset."""
    from idpulse.config import load_config
    from idpulse.control import CONTROLS, ControlLoss, register_control

    @register_control
    class NormLoss(ControlLoss):  # the features' mean towards a requested value, per image
        name, request = "norm", "norm"

        def settings(self, cfg):
            return cfg.weights.get("norm", 1.0), cfg.thresholds.get("norm", 10.0)

        def prepare(self, value):
            return torch.as_tensor(value, dtype=torch.float32)

        def loss(self, feats):
            want = self.per_row(self.value, len(feats)) if self.per_image else self.value
            return (feats.mean(1) - want).abs()

    try:
        cfg = load_config(ControlConfig, None, ["--weights.norm=3", "--thresholds.norm=-1"])
        ctl = Controls(extractor, FixedAlign(tiny_generator.resolution), cfg, norm=[0.5, 0.25], per_image=True)
        assert ctl.used == ["norm"] and ctl.losses[0].weight == 3.0
        assert "3*L_norm" in objective_text(ctl)
        res, ok, _ = controlled_search(tiny_generator, torch.rand(2, 3, 4, 4), ctl, steps=2, eps=1.0)
        assert "norm" in res.extra and not ok.any()  # no result meets a negative threshold
        assert ctl.subset([1]).value("norm").tolist() == [0.25]
        with pytest.raises(TypeError, match="unknown control request 'nrom'"):
            Controls(extractor, FixedAlign(tiny_generator.resolution), cfg, nrom=1.0)
    finally:
        CONTROLS.pop("norm", None)
