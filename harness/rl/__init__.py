"""Dense-Path REINFORCE: the trainer (a client of the server, as any trainer is: credit, policy,
trainer, config) and the experiment (`make rl`: arms, servers, summary)."""
