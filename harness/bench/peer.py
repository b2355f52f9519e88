"""The peer a user would run instead of this service: two stock vLLM OpenAI servers.

One server per model, configured from the service's own engine options
(`dense_reward_server.engines.options.vllm_options`, the same Settings) turned into CLI flags,
so both systems schedule the same way; the client pairs their `prompt_logprobs=0` answers.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import numpy as np
import orjson

from dense_reward_server.config import Settings
from dense_reward_server.engines.options import VllmOptions, vllm_options
from dense_reward_server.sequence import ScoreInput
from harness.bench.clients import Client, ClientError
from harness.bench.drive import Outcome
from harness.bench.systems import HttpSystem
from harness.ports import HOST, free_port, loopback_url
from harness.processes import ManagedProcess
from harness.servers import SERVER_KEEPALIVE_S, cli_flags, wait_ready
from harness.workloads import Request

ROLES = ("sft", "base")


def vllm_serve_command(options: VllmOptions, role: str, port: int) -> list[str]:
    """The OpenAI server of one engine; logging as the service's (no stats, no access log)."""
    return [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        *cli_flags(options.engine_args, false_as_no=False),
        "--served-model-name", role, "--host", HOST, "--port", str(port),
        "--disable-uvicorn-access-log", "--uvicorn-log-level", "warning",
    ]  # fmt: skip


class VllmServePair(HttpSystem):
    """mode "batch": one /v1/completions call per server with all the request's sequences as a
    prompt list; mode "per_seq": one call per sequence per server, all in flight at once.

    The options skip the tokenizer as the service does: the server never detokenizes prompt
    log-probs (the dominant per-token cost on CPU), which scoring does not need.
    """

    name = "vllm_serve_pair"

    def __init__(self, settings: Settings, mode: str, cpu: bool, client_kind: str) -> None:
        super().__init__(client_kind)
        self.options = {
            role: vllm_options(settings, role, model, None, cpu=cpu)
            for role, model in zip(ROLES, (settings.sft_model, settings.base_model), strict=True)
        }
        self.mode, self.cpu = mode, cpu
        self.urls: dict[str, str] = {}
        self._bodies: dict[Request, dict[str, list[bytes]]] = {}

    def start(self) -> None:
        started = time.perf_counter()
        for role in ROLES:
            port = free_port()
            self.urls[role] = loopback_url(port)
            command = vllm_serve_command(self.options[role], role, port)
            # The same idle keep-alive as the service's, so one client setting fits both.
            env = {
                **stock_env(self.options[role].env),
                "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": str(SERVER_KEEPALIVE_S),
            }
            self.procs.append(ManagedProcess(command, name=f"vllm-{role}", env=env))
            if not self.cpu:
                # One GPU: each server profiles free memory at start, so one after the other.
                wait_ready(self.urls[role] + "/v1/models", self.procs, timeout_s=900)
        for role in ROLES:  # CPU: started together, one core each, load in parallel
            wait_ready(self.urls[role] + "/v1/models", self.procs, timeout_s=600)
        self.startup_s = time.perf_counter() - started

    def describe(self) -> dict[str, Any]:
        engine_args = self.options["sft"].engine_args
        return {
            **super().describe(),
            "mode": self.mode,
            "skip_tokenizer_init": engine_args["skip_tokenizer_init"],
            "device": "cpu" if self.cpu else "cuda",
            "env": {role: stock_env(options.env) for role, options in self.options.items()},
        }

    def prepare(self, requests: list[Request]) -> None:
        for request in requests:
            full = [[*s.prompt_ids, *s.completion_ids] for s in request.inputs]
            # One-sample traffic is one call per sequence whatever the mode.
            batched = self.mode == "batch" and not request.one_sample
            prompts: list[Any] = [full] if batched else full
            self._bodies[request] = {
                role: [completions_body(role, prompt) for prompt in prompts] for role in ROLES
            }

    async def _post(self, client: Client, role: str, body: bytes) -> tuple[int, Any]:
        status, _, content = await client.post(self.urls[role] + "/v1/completions", body)
        return (200, orjson.loads(content)) if status == 200 else (status, None)

    async def send(self, client: Client, request: Request, keep: bool = False) -> Outcome:
        bodies = self._bodies[request]
        calls = [self._post(client, role, b) for role in ROLES for b in bodies[role]]
        try:
            answers = await asyncio.gather(*calls)  # both servers at once
        except ClientError:
            return Outcome(status=0)
        bad = [status for status, _ in answers if status != 200]
        if bad:
            return Outcome(status=bad[0])
        half = len(answers) // 2
        sft, base = choices(answers[:half]), choices(answers[half:])
        rewards = [
            completion_logprobs(s, c_sft) - completion_logprobs(s, c_base)
            for s, c_sft, c_base in zip(request.inputs, sft, base, strict=True)
        ]
        return Outcome(status=200, rewards=rewards if keep else None)


def stock_env(env: dict[str, str]) -> dict[str, str]:
    """An engine's environment without the service's own variables: the peer is stock vLLM
    (DRS_VLLM_BUSY_LOOP_S would switch on the service's vLLM plugin in its processes)."""
    return {name: value for name, value in env.items() if not name.startswith("DRS_")}


def completions_body(role: str, prompt: list[int] | list[list[int]]) -> bytes:
    """Prefill only: one generated token, the prompt's own log-probs (no alternatives)."""
    body = {"model": role, "prompt": prompt, "max_tokens": 1, "prompt_logprobs": 0}
    return orjson.dumps({**body, "temperature": 0})


def choices(answers: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    """The choices of one server's answers, in prompt order."""
    return [c for _, a in answers for c in sorted(a["choices"], key=lambda c: c["index"])]


def completion_logprobs(seq: ScoreInput, choice: dict[str, Any]) -> np.ndarray:
    """Log-probs of the completion tokens from one choice's `prompt_logprobs`.

    prompt_logprobs[p] is None at p = 0, else {"<token id>": {"logprob", "rank",
    "decoded_token"}} holding the actual token (prompt_logprobs=0 asks for no alternatives).
    """
    positions = choice["prompt_logprobs"]
    start = len(seq.prompt_ids)
    return np.asarray(
        [positions[start + j][str(tok)]["logprob"] for j, tok in enumerate(seq.completion_ids)],
        dtype=np.float32,
    )
