"""ml_collections config files, one per experiment setting."""
