"""Scoring engines: log pi(y_t | x, y_<t) for given token ids, under one model each."""
