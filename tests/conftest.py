"""Shared fixtures. Tests that need ../shared find it through IDPULSE_SHARED (default ../shared)
and skip with the reason when it is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from idpulse.data import shared_dir  # noqa: E402

SHARED = shared_dir()


def need_shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (set IDPULSE_SHARED to the shared folder)")
    return p


@pytest.fixture(scope="session")
def parity():
    return torch.load(need_shared("reference", "pulse_parity_32px.pt"), weights_only=True)


@pytest.fixture
def tiny_generator():
    """A random 16 px generator with a quick Gaussian fit (for tests that need any generator)."""
    from idpulse.generator.stylegan import Generator

    torch.manual_seed(0)
    G = Generator(resolution=16, fmap_base=64, fmap_max=32)
    G.fit_gaussian(2000)
    return G.eval().requires_grad_(False)
