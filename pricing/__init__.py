"""voltrisk pricing."""
