#!/usr/bin/env python
"""Peak memory of the paper's tables at 1024 px for N and 2N faces per table, on the CPU.

An untrained 1024 px generator (`generator.random_init`, few feature maps: the images are full
size, the network small), one search step per face, the bundled extractors and judges. Each N
runs in its own process (peak RSS is per process) and writes into its own folder. The tables
read faces batch by batch, so the peak should not grow with N; a version that held every set at
full resolution in float32 grows by about 12.6 MB per face per set held (five sets in Table 1).

  python benchmarks/tables_memory.py              # N = 4 and 8, batch 2
  python benchmarks/tables_memory.py --faces 8 --dlib  # with the dlib identity judge (slow at 1024 px)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(n: int, out: str, batch: int, dlib: bool) -> None:
    sys.path.insert(0, str(ROOT))
    from idpulse.config import load_config
    from idpulse.evaluation import tables

    if not dlib:  # the identity table off (dlib at 1024 px costs minutes, not memory)
        tables._dlib = lambda: "off in this benchmark"
    over = [f"--out={out}", "--device=cpu", "--generator.random_init=true", "--generator.resolution=1024",
            "--generator.fmap_base=16384", "--generator.fmap_max=8", "--generator.fit_samples=1000",
            f"--pairs={max(n, 2)}", f"--race_faces={n}", f"--attr_faces={n}", f"--request_faces={n}",
            "--thumbnail_size=8", f"--batch={batch}", "--pulse.steps=1", "--pulse.retries=0",
            *[f"--{k}={ROOT / 'checkpoints' / v}" for k, v in (("f_arc", "extractor_f_arc_iresnet18.pt"),
                                                               ("f", "extractor_f_iresnet18.pt"),
                                                               ("race_judge", "judges/race.pt"),
                                                               ("attr_judge", "judges/attr.pt"))]]
    t0 = time.time()
    report = tables.eval_tables(load_config(tables.TablesConfig, None, over))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"faces": n, "peak_rss_mb": round(peak_mb), "seconds": round(time.time() - t0),
                      "results": report["results"]["total"]}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", type=int, default=4, help="N: faces per table in the first run (2N in the second)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--dlib", action="store_true", help="also run the dlib identity judge")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child is not None:
        return child(a.child, a.out, a.batch, a.dlib)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (a.faces, 2 * a.faces):
            cmd = [sys.executable, __file__, "--child", str(n), "--out", str(Path(tmp) / f"n{n}"),
                   "--batch", str(a.batch)] + (["--dlib"] if a.dlib else [])
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if r.returncode:
                sys.exit(r.stderr[-3000:])
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print("| faces per table | PULSE results | peak RSS (MB) | seconds |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['faces']} | {r['results']} | {r['peak_rss_mb']} | {r['seconds']} |")
    held = 5 * a.faces * 3 * 1024 * 1024 * 4 / 2**20  # Table 1's five float32 sets, for the extra N faces
    print(f"\nfrom N to 2N faces the peak grew {rows[1]['peak_rss_mb'] - rows[0]['peak_rss_mb']} MB; holding Table 1's "
          f"five sets at 1024 px would add about {held:.0f} MB")


if __name__ == "__main__":
    main()
