"""Reward maths and tokenization: pure functions over token ids and arrays."""
