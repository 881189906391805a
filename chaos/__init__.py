"""hub-chaos: a Docker Hub outage simulator for registry mirrors."""

__version__ = "0.1.0"
