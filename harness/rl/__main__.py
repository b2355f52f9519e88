"""`python -m harness.rl`: the experiment (see harness/rl/experiment.py)."""

from harness.rl.experiment import main

if __name__ == "__main__":
    main()
