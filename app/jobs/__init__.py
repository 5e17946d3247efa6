"""Retraining jobs: records, the queue, the runner of training processes, promotion."""
