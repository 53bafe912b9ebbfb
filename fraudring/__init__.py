"""voltrisk fraudring."""
