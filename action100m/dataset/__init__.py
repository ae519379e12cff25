"""The dataset as files: the record schema, WebDataset shards, the official release's layout, statistics."""
