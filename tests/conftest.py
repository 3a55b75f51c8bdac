"""Shared fixtures. Tests that need ../shared find it through IDPULSE_SHARED (default ../shared)
and skip with the reason when it is absent."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
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


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global RNG state, whatever ran before it: a test that draws
    unseeded random inputs sees the same ones alone, in the suite, or under -k / -x."""
    torch.manual_seed(0)
    np.random.seed(0)


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


# --- RecordIO, written from the format's description (tests of the reader and of MS1M training) ---

from idpulse.data.synthetic import RECORDIO_MAGIC, write_recordio  # noqa: E402,F401


def pack(label, payload=b"", id_=0):
    if isinstance(label, (list, tuple)):
        return struct.pack("IfQQ", len(label), 0.0, id_, 0) + np.asarray(label, np.float32).tobytes() + payload
    return struct.pack("IfQQ", 0, float(label), id_, 0) + payload
