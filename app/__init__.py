"""The model server: HTTP API (api/), model serving (serving/), retraining jobs (jobs/)."""
