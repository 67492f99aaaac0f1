"""Entry point of the fork server process."""

import sys

from automation_executor.forkserver.server import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
