"""The corpus stages: statistics, cleaning, near-duplicate removal (with sentence embeddings),
leakage-free splits and training-set augmentation."""
