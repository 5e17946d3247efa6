"""A job worker: ``python -m app.jobs.worker`` consumes the queue named by GAN_QUEUE_URL.

Run any number of them (one per GPU, say). SIGTERM stops gracefully: a running training
checkpoints and its job goes back on the queue to resume on the next free worker.
"""

from __future__ import annotations

import logging

from app.jobs.queue import JobQueue
from app.settings import Settings
from core.errors import NotReady


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    queue = JobQueue(settings)
    try:
        queue.reap()
    except NotReady:  # the queue is down: the service replicas reap once it is back
        logging.getLogger("app.jobs.worker").warning("queue unreachable at start: reaping skipped")
    queue.consumer(embedded=False).run()


if __name__ == "__main__":
    main()
