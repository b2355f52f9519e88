"""`dense-reward-server audit`: is a running server's reward safe to optimize? (README, Audit)."""
