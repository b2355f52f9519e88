"""Reward-quality evaluation: does the reward rank expert completions above corrupted ones?"""
