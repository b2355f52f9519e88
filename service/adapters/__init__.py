"""Adapters for RL trainers: TRL (reward_funcs), verl (custom reward function). OpenRLHF talks
to the server directly through POST /get_reward (service.api.openrlhf)."""
