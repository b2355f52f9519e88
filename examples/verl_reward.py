"""verl's custom reward function, called the way verl's reward manager calls it.

    make run                                       # in one shell: the server on :8000
    DRS_REWARD_URL=http://127.0.0.1:8000 python examples/verl_reward.py

In a verl config:

    custom_reward_function:
      path: <this repo>/service/adapters/verl.py
      name: compute_score
"""

from __future__ import annotations

from service.adapters.verl import compute_score, token_level_tensor


def main() -> None:
    messages = [{"role": "user", "content": "Sort ascending: 42 7 19 3"}]
    scores = [
        compute_score("demo", answer, None, {"prompt": messages})
        for answer in ("3 7 19 42", "3 19 7 42")
    ]
    for answer, score in zip(("3 7 19 42", "3 19 7 42"), scores, strict=True):
        print(f"{answer!r}: score {score['score']:+.3f}, dense {score['dense_rewards']}")
    lengths = [len(s["dense_rewards"]) for s in scores]
    tensor = token_level_tensor([s["dense_rewards"] for s in scores], lengths, max(lengths) + 2)
    print("token-level reward tensor [batch, response_length]:")
    print(tensor.round(3))


if __name__ == "__main__":
    main()
