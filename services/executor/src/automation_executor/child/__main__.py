"""Entry point of the child process."""

from automation_executor.child.main import main

if __name__ == "__main__":
    raise SystemExit(main())
