"""`python -m dense_reward_server ...` is the same as the `dense-reward-server` command."""

from dense_reward_server.cli import main

if __name__ == "__main__":
    main()
