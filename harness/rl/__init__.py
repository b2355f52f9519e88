"""The Dense-Path REINFORCE experiment (`make rl`): arms, servers, summary."""
