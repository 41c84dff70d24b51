"""High-level jobs built from the library: train, attack, defend, reproduce.

Each job is a function of an ml_collections config and a work directory, so
the CLIs in `experiments/` stay thin and every job is testable.
"""
