"""verl's custom reward function, called the way verl's reward manager calls it, and the
`dense_reward` reward manager on a verl rollout batch.

    make run                                       # in one shell: the server on :8000
    DRS_REWARD_URL=http://127.0.0.1:8000 python examples/verl_reward.py

In a verl config, sequence level (any reward manager; verl 0.9's `main_ppo` reads these keys
under `reward:`, i.e. `reward.custom_reward_function.path`, releases up to 0.8 at the top level):

    custom_reward_function:
      path: <this repo>/client/dense_reward_client/adapters/verl.py
      name: compute_score

Token level, where verl's trainer calls batch reward managers (`reward_fn(batch,
return_dict=True)`: verl <= 0.6.x, and 0.7.0 with `reward_model.use_reward_loop=False`);
loading the file above registers "dense_reward", and verl loads it before it looks the
manager up:

    custom_reward_function:
      path: <this repo>/client/dense_reward_client/adapters/verl.py
      name: compute_score
    reward_model:
      reward_manager: dense_reward
      reward_kwargs: {url: "http://HOST:8000"}   # CLI: +reward_model.reward_kwargs.url=...

From verl 0.7.1 (0.9.1 included) the trainer scores each sample alone in its reward loop and
keeps one float per response. Per-token rewards go in through the rollout instead: this
agent-loop manager turns that loop off and writes the batch's dense rewards as `rm_scores`,
which the trainer takes as `token_level_scores` (server from DRS_REWARD_URL):

    actor_rollout_ref.rollout.agent.agent_loop_manager_class=dense_reward_client.adapters.verl.DenseRewardAgentLoopManager
    algorithm.adv_estimator=reinforce_plus_plus   # or gae: estimators that keep per-token credit

`token_level` below calls the manager on a rollout-shaped batch, as both routes do.
"""

from __future__ import annotations

import importlib.util
import json

from dense_reward_client.adapters.verl import client, compute_score, token_level_tensor

MESSAGES = [{"role": "user", "content": "Sort ascending: 42 7 19 3"}]
ANSWERS = ("3 7 19 42", "3 19 7 42")


def sequence_level() -> None:
    scores = [compute_score("demo", answer, None, {"prompt": MESSAGES}) for answer in ANSWERS]
    for answer, score in zip(ANSWERS, scores, strict=True):
        print(f"{answer!r}: score {score['score']:+.3f}, dense {score['dense_rewards']}")
    dense = [json.loads(s["dense_rewards"]) for s in scores]  # a JSON list per row
    lengths = [len(d) for d in dense]
    tensor = token_level_tensor(dense, lengths, max(lengths) + 2)
    print("token-level reward tensor [batch, response_length]:")
    print(tensor.round(3))


def token_level() -> None:
    """What verl's trainer hands a reward manager after a rollout: prompt ids left-padded,
    response ids (with the EOS the policy sampled) right-padded, an attention mask over both."""
    import torch
    from dense_reward_client.adapters.verl import DenseRewardManager
    from transformers import AutoTokenizer
    from verl import DataProto

    # The policy's tokenizer must be the server's: here, the server's own (a local path).
    tokenizer = AutoTokenizer.from_pretrained(client().models()["data"][0]["model"])
    rendered = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    prompt = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    answers = [
        tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for answer in ANSWERS
    ]
    width, length = len(prompt), max(len(ids) for ids in answers) + 2
    responses = torch.full((len(answers), length), tokenizer.pad_token_id)
    attention = torch.ones((len(answers), width + length), dtype=torch.int64)
    for i, ids in enumerate(answers):
        responses[i, : len(ids)] = torch.tensor(ids)
        attention[i, width + len(ids) :] = 0
    batch = DataProto.from_dict(
        tensors={
            "prompts": torch.tensor([prompt] * len(answers)),
            "responses": responses,
            "attention_mask": attention,
        }
    )
    output = DenseRewardManager(tokenizer)(batch, return_dict=True)
    assert isinstance(output, dict)
    batch.batch["token_level_scores"] = output["reward_tensor"]  # what verl's trainer does
    print("dense_reward manager: token_level_scores [batch, response_length]:")
    print(batch.batch["token_level_scores"].numpy().round(3))


def main() -> None:
    sequence_level()
    if importlib.util.find_spec("verl") is None:
        print("(verl is not installed: no dense_reward manager example)")
    else:
        token_level()


if __name__ == "__main__":
    main()
