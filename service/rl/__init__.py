"""Dense-Path REINFORCE: training a policy on the server's dense rewards."""
