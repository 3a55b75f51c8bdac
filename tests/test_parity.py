"""Parity with the public PULSE code, from ../shared/reference/pulse_parity_32px.pt."""

import json

import numpy as np
import pytest
import torch
from conftest import need_shared

from idpulse.generator.stylegan import Generator, MappingNetwork, SynthesisNetwork
from idpulse.pulse import BicubicDownsample, PulseInit, geocross, pulse_search


def _generator(parity):
    G = Generator(**parity["synthesis_config"])
    G.synthesis.load_state_dict(parity["synthesis_state_dict"], strict=True)
    G.mapping.load_state_dict(parity["mapping_state_dict"], strict=True)
    fit = parity["search"]["gaussian_fit"]
    G.set_gaussian_fit(fit["mean"], fit["std"])
    return G.eval()


def test_mapping_matches_pulse(parity):
    m = MappingNetwork()
    m.load_state_dict(parity["mapping_state_dict"], strict=True)
    with torch.no_grad():
        out = m(parity["mapping_in"])
    assert (out - parity["mapping_out"]).abs().max() < 1e-4


def test_synthesis_matches_pulse(parity):
    s = SynthesisNetwork(**parity["synthesis_config"])
    s.load_state_dict(parity["synthesis_state_dict"], strict=True)
    with torch.no_grad():
        out = s(parity["synthesis_in_latent"], parity["synthesis_in_noise"])
    assert out.shape == parity["synthesis_out"].shape
    assert (out - parity["synthesis_out"]).abs().max() < 1e-4


def test_bicubic_matches_pulse(parity):
    for f in (4, 8):
        out = BicubicDownsample(f)(parity["bicubic_in"])
        assert (out - parity[f"bicubic_out_x{f}"]).abs().max() < 1e-5


def test_geocross_matches_pulse(parity):
    assert torch.allclose(geocross(parity["geocross_in"]).sum(), parity["geocross_out"], rtol=1e-5)


def _search(parity, dtype, threads):
    """Our search from PULSE's recorded start, with G and every input in `dtype`, on `threads` threads."""
    s = parity["search"]
    kw = s["kwargs"]
    assert kw["loss_str"] == "100*L2+0.05*GEOCROSS" and kw["noise_type"] == "trainable"
    G = _generator(parity).to(dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return pulse_search(G, s["thumbnail"].to(dtype), steps=kw["steps"], eps=kw["eps"],
                            learning_rate=kw["learning_rate"], lr_schedule=kw["lr_schedule"], optimizer=kw["opt_name"],
                            num_trainable_noise_layers=kw["num_trainable_noise_layers"],
                            bad_noise_layers=[int(b) for b in kw["bad_noise_layers"].split(".")],
                            tile_latent=kw["tile_latent"],
                            init=PulseInit(s["initial_latent"].to(dtype), [n.to(dtype) for n in s["initial_noise"]]))
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_search_reproduces_pulse_float64_trajectory(parity, threads):
    """The whole 30-step search in float64, where it is not chaotic: every step's losses to 1e-9
    of PULSE's own float64 run, whatever the thread count or the machine's kernels."""
    ref = parity["search_f64"]
    r = _search(parity, torch.float64, threads)
    assert r.images.dtype == torch.float64 and r.history[0]["TOTAL"].dtype == torch.float64
    assert len(r.history) == len(ref["losses"]) == ref["steps"] == 30
    for key in ("L2", "GEOCROSS", "TOTAL"):
        ours = np.array([h[key].item() for h in r.history])
        theirs = np.array([step[key] for step in ref["losses"]])
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0, err_msg=key)
    assert bool(r.success.item()) is ref["succeeded"]


@pytest.mark.parametrize("threads", [1, 2])
def test_search_float32_first_steps_match_pulse(parity, threads):
    """float32 only for the first steps: 1e-7 rounding differences (kernels, threads, CPUs) grow
    chaotically (to ~1e-2 by step 30, in PULSE's own code too), so a tight match later would test
    the machine. The start and the first update (steps 0-1: the losses and the gradient step) must
    match to float32 rounding; steps 2-4 only to 2e-3, as the growth allows (measured: below 3e-6 on
    one thread, up to 3e-4 on two threads of an AMD EPYC, whose kernels split sums differently).
    A wrong loss, weight or step rule is off at step 0 or 1 by far more; the float64 test above
    holds the whole trajectory."""
    r = _search(parity, torch.float32, threads)
    assert len(r.history) == 30
    for key in ("L2", "GEOCROSS", "TOTAL"):
        ours = np.array([h[key].item() for h in r.history[:5]])
        theirs = np.array([step[key] for step in parity["search"]["losses"][:5]])
        np.testing.assert_allclose(ours[:2], theirs[:2], rtol=1e-5, err_msg=key)
        np.testing.assert_allclose(ours[2:], theirs[2:], rtol=2e-3, err_msg=key)


def test_full_size_keys_are_pulse_keys():
    keys = json.loads(need_shared("reference", "pulse_ffhq1024_state_dict_keys.json").read_text())
    G = Generator()  # FFHQ 1024 px defaults
    for name, module in (("synthesis.pt", G.synthesis), ("mapping.pt", G.mapping)):
        ours = {k: list(v.shape) for k, v in module.state_dict().items()}
        assert ours == keys[name]
    assert G.num_ws == 18
