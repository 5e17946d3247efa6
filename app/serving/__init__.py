"""Serving loaded model versions: engines, their processes, batching, the pool."""
