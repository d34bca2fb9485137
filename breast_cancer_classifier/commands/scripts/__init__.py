"""The parsers and ``main`` of the scripts under ``src/`` (at the original's paths)."""
