"""voltrisk simulators."""
