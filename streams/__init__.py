"""facestream: face embeddings and re-ranking as a Kafka stream processor."""

__version__ = "0.1.0"
