"""Bulk exports: millions of a version's images, as shards on disk, made by a job.

An export job goes through the same queue, store and workers as retraining
(``app.jobs``); its worker runs ``python -m app.exports``, which writes shards
(``shards``) and records each finished one (``manifest``), so it resumes after a restart
without redoing them. ``plan`` says which seed and label each image gets.
"""
