"""`python -m service ...` is the same as the `dense-reward-server` command."""

from service.cli import main

if __name__ == "__main__":
    main()
