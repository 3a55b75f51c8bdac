"""Training loops and what they share:

- `gan.py`: the StyleGAN v1 generator (non-saturating loss, lazy R1, style mixing, EMA, DiffAugment).
- `gan_data.py`: its training images: several datasets, tight crops framed with their border masked.
- `discriminator.py`: the StyleGAN-v1-style discriminator used only to train the generator.
- `augment.py`: differentiable augmentation (DiffAugment) for GANs on small data.
- `extractor_config.py`: the extractor's training config (batch sizes and Eq. 10's weights as sections).
- `extractor_loop.py`: the feature extractor f, Algorithm 1 (`mixed_batch`, `eq10_step`: Eq. 10) inside
  Algorithm 2's meta-epochs (`training_loop`).
- `extractor_data.py`: Algorithm 2's data: the training faces, L_arc's source, each meta-epoch's
  lookalikes (`make_lookalikes`) and L_siam's pairs read back (`load_siam`).
- `pretrained.py`: f from a pretrained backbone (`model.init`), its embedding's PCA start, a frozen
  backbone's cached features.
- `lookalike.py`: the lookalike dataset of PULSE results (Algorithm 2's data step).
- `dic_loop.py`: the DIC baseline's job (setup, exact resume, export); `dic_stages.py` its three
  stages (hourglass pretraining, then DIC, optionally DICGAN).
- `dicgan.py`: DICGAN, a trained DIC fine-tuned with a feature loss and a GAN loss.
"""
