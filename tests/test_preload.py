"""preload_aligned: the same faces in memory and from the shared file, written once and mapped."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from idpulse.align import crop_template
from idpulse.data import FaceDataset
from idpulse.data.preload import align_to_arcface, preload_aligned


def _dataset(tmp_path, n=5, size=40):
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        p = tmp_path / "img" / f"{i:03d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
        files.append(p)
    lm = crop_template(size) + rng.normal(0, 1.0, (5, 2))  # near the crop's template, not on it
    # one face without landmarks: the fixed crop-template warp
    return FaceDataset(files=files, labels={"identity": list(range(10, 10 + n)), "name": [f"n{i}" for i in range(n)]},
                       landmarks=[lm if i != 2 else None for i in range(n)])


def test_preload_file_matches_memory_and_is_mapped_once(tmp_path):
    ds = _dataset(tmp_path)
    mem, labels = preload_aligned(ds, 0, "test faces", progress=False)
    assert mem.shape == (5, 3, 112, 112) and mem.dtype == torch.uint8
    it = ds[0]
    want = (align_to_arcface(it["image"], it["landmarks"]).clamp(0, 1) * 255).round().to(torch.uint8)
    assert torch.equal(mem[0], want)
    assert labels[1]["identity"].item() == 11 and labels[1]["name"] == "n1"
    assert set(labels[0]) == {k for k in ds[0] if k not in ("image", "landmarks", "path")}

    shared, labels2 = preload_aligned(ds, 0, "test faces", progress=False, cache_dir=tmp_path / "cache")
    assert torch.equal(shared, mem) and [lb["name"] for lb in labels2] == [lb["name"] for lb in labels]
    files = list((tmp_path / "cache").glob("test-faces-*.npy"))
    assert len(files) == 1 and not list((tmp_path / "cache").glob("*.tmp*"))
    maps = Path("/proc/self/maps")
    if maps.exists():  # Linux: the tensor's pages are the file's (mapped), not a private copy
        assert str(files[0]) in maps.read_text()
    stamp = files[0].stat().st_mtime_ns
    again, _ = preload_aligned(ds, 0, "test faces", progress=False, cache_dir=tmp_path / "cache")
    assert torch.equal(again, mem) and files[0].stat().st_mtime_ns == stamp  # read, not written again
    first3, _ = preload_aligned(ds, 3, "test faces", progress=False, cache_dir=tmp_path / "cache")
    assert torch.equal(first3, mem[:3]) and len(list((tmp_path / "cache").glob("*.npy"))) == 2  # its own file
