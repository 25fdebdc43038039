"""Model backends and small reference models."""
