"""Line decoders: Docker json-file, CRI and plain text, detected per file."""

__all__ = ["cri", "docker", "entry", "plain"]
