"""voltrisk: telematics auto-insurance streaming platform for electric vehicles."""

__version__ = "0.1.0"
