"""podlog: a Kubernetes log pipeline that loses nothing."""

__all__ = ["__version__"]

__version__ = "0.1.0"
