"""The small demo SFT/base pair: built from scratch, seeded, in minutes on 2 CPU cores."""
