"""Every response a test receives, checked against the live server's own /openapi.json.

The service serializes its large bodies with orjson, past FastAPI's `response_model`
validation (a second pass over 200k floats would cost more than scoring them), so the
documented schema is only true if something checks it: this does, for each response to a
test, by the status the server answered. A status an operation does not document fails too.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import httpx
from jsonschema import Draft202012Validator

# Not JSON API answers: the docs page, the spec itself, Prometheus text, the static page.
UNCHECKED_PREFIXES = ("/openapi.json", "/docs", "/redoc", "/metrics", "/ui")


class SchemaViolation(AssertionError):
    pass


class ResponseChecker:
    def __init__(self) -> None:
        self._docs: dict[str, dict[str, Any]] = {}
        self.checked = 0

    def check(self, response: httpx.Response) -> None:
        request = response.request
        path = request.url.path
        if path.startswith(UNCHECKED_PREFIXES) or not response.is_stream_consumed:
            return
        origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
        doc = self._doc(origin, request.headers.get("authorization"))
        schema = self._schema(doc, path, request.method.lower(), response.status_code)
        validator = Draft202012Validator({**schema, "components": doc.get("components", {})})
        body = response.json()
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            where = "/".join(map(str, errors[0].absolute_path))
            raise SchemaViolation(
                f"{request.method} {path} -> {response.status_code}: the body does not match "
                f"the documented schema at {where or 'the top'}: {errors[0].message[:300]}"
            )
        self.checked += 1

    def _doc(self, origin: str, authorization: str | None) -> dict[str, Any]:
        # Each test server on a port serves the same app code, so one spec per origin.
        if origin not in self._docs:
            # Plain urllib: fetching the spec must not go through the checked httpx clients.
            spec = urllib.request.Request(origin + "/openapi.json")
            if authorization:
                spec.add_header("Authorization", authorization)
            try:
                with urllib.request.urlopen(spec, timeout=30) as answer:
                    self._docs[origin] = json.load(answer)
            except urllib.error.HTTPError as error:
                # A request without a key to a server with keys: the spec is the same app
                # code's as any other test server's, so one read earlier serves.
                if error.code != 401 or not self._docs:
                    raise
                return next(iter(self._docs.values()))
        return self._docs[origin]

    @staticmethod
    def _schema(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
        error = {"$ref": "#/components/schemas/ErrorResponse"}
        operation = doc["paths"].get(path, {}).get(method)
        if operation is None:  # unknown route or method: the one error shape
            if status not in (404, 405):
                raise SchemaViolation(f"{method.upper()} {path}: undocumented, answered {status}")
            return error
        if status == 401 and "401" not in operation["responses"]:
            return error  # API keys guard every route; the 401 is the middleware's
        documented = operation["responses"].get(str(status))
        if documented is None:
            raise SchemaViolation(f"{method.upper()} {path}: status {status} is not documented")
        schema: dict[str, Any] = documented["content"]["application/json"]["schema"]
        return schema
