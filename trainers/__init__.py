"""Networks, losses, metrics, training loop, evaluation and tiled inference for SR-CACO-2."""
