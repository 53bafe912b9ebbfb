"""voltrisk contracts."""
