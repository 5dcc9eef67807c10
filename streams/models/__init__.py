"""Pretrained models: where they come from (catalog), how they are fetched, and their serving variants."""
