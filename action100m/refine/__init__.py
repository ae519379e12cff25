"""Self-Refine's library parts: the Tree-of-Captions Markdown, the prompts, the token budget and answer parsing.

The stage that runs them over a shard is data_build/refine.py.
"""
