"""A static viewer for shard sets and release annotations (`action100m view`): see `site`."""

from action100m.view.site import build_site
from action100m.view.sources import ViewError, release_source, shard_source

__all__ = ["ViewError", "build_site", "release_source", "shard_source"]
