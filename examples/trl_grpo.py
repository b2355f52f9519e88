"""A few GRPO steps of a small policy rewarded by dense-reward-server (TRL, CPU).

    make run                                      # in one shell: the server on :8000
    python examples/trl_grpo.py --url http://127.0.0.1:8000 --policy .models/demo/sft

The policy samples sorted-list answers; the reward of each completion is its total dense
reward from the server, computed on the exact token ids the policy sampled.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from typing import Any

from datasets import Dataset
from dense_reward_client.adapters.trl import DenseReward
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer


def prompts(count: int, seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        numbers = " ".join(str(rng.randrange(100)) for _ in range(rng.randint(3, 6)))
        rows.append({"prompt": [{"role": "user", "content": f"Sort ascending: {numbers}"}]})
    return Dataset.from_list(rows)


def train(url: str, policy: str, steps: int, api_key: str | None = None) -> dict[str, Any]:
    """Run `steps` GRPO steps; return the trainer's log history."""
    tokenizer = AutoTokenizer.from_pretrained(policy)
    model = AutoModelForCausalLM.from_pretrained(policy)
    reward = DenseReward(url, api_key, reduction="total", tokenizer=tokenizer)
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out,
            per_device_train_batch_size=4,
            num_generations=4,
            max_completion_length=16,
            max_steps=steps,
            learning_rate=1e-5,
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            bf16=False,
            seed=0,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[reward],
            args=config,
            train_dataset=prompts(8 * steps),
            processing_class=tokenizer,
        )
        trainer.train()
        return {"log_history": trainer.state.log_history, "global_step": trainer.state.global_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--policy", default=".models/demo/sft")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    result = train(args.url, args.policy, args.steps, args.api_key)
    for entry in result["log_history"]:
        if "reward" in entry:
            print(f"step {entry.get('step')}: mean reward {entry['reward']:.3f}")


if __name__ == "__main__":
    main()
