"""Chemistry: structure normalisation, candidate pools, fingerprints."""
