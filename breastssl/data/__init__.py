"""Data: the canonical manifest, readers, the synthetic generator, datasets and transforms."""
