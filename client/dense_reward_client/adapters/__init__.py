"""Adapters for RL trainers: TRL (`trl.DenseReward`, reward_funcs), verl (`verl`: custom reward
function, batch reward manager, agent-loop manager). Nothing imports a trainer's libraries until
its adapter is imported. OpenRLHF talks to the server directly through POST /get_reward."""
