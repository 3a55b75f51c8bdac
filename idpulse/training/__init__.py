"""Training loops: the StyleGAN generator (gan.py); the extractor loops arrive with their issue."""
