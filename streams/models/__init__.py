"""Pretrained models: where they come from (catalog), what each family is (families), fetching, serving variants."""
