"""Destinations: one module per storage type, each implementing `base.Destination`."""
