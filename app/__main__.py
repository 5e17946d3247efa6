"""``python -m app [--host H] [--port P]``: serve, with the settings from the environment."""

from __future__ import annotations

import argparse
import os

from app.server import run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    # PORT: what container platforms set; the images read it too.
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args()
    run(args.host, args.port)


if __name__ == "__main__":
    main()
