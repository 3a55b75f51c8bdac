"""Evaluation:

- `generator_report.py`: how well a generator serves PULSE (success rate, final L_DS, samples).
- `verification.py`: an extractor's face verification on held-out identities.
- `tables.py`: the paper's tables from one config, judged independently, resumable.
- `tables_render.py`: the tables' report as Markdown.
- `tables_requests.py`: the requests table (does a request change what a judge sees?).
- `table1.py`: Table 1 and Appendix B from angles between the pairs of each set.
- `table_cache.py`: the tables' PULSE results on disk and the searches that make them.
- `table_stream.py`: the tables' measurements over sets of faces read batch by batch.
- `table_dic.py`: the baselines that need no search (DIC, bicubic) and the fidelity table.
- `judges.py`: independent race and attribute judges, never used by any optimisation.
- `identity.py`: the identity judge (dlib's face recognition ResNet).
- `fidelity.py`: PSNR/SSIM on the Y channel (BT.601), as face super-resolution papers report them.
- `dic_report.py`: how well a DIC recovers held-out faces from their thumbnails, against bicubic.
- `stats.py`: the 95% intervals (Wilson score for proportions, normal approximation for means).
"""
