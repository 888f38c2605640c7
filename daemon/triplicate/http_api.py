"""The daemon's small HTTP endpoint (`[http]`, 127.0.0.1 by default).

    GET  /healthz      liveness: the event loop answers
    GET  /readyz       readiness: the journal answers a query and every watcher runs
    GET  /metrics      Prometheus text format (metrics.py)
    GET  /api/status   the same JSON as `triplicate status --json`, with live throughput
    POST /api/reload   re-read the config file (as SIGHUP)

With `token_env` set, /metrics and /api/ need `Authorization: Bearer <token>`;
/healthz and /readyz stay open (they tell nothing but "up") so that health
checks need no secret. Binding failures are logged and the daemon goes on
copying without the endpoint: copies matter more than their metrics.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Awaitable, Callable

import structlog
from aiohttp import web

from .config import HttpSettings

log = structlog.get_logger("triplicate.http")


class HttpApi:
    def __init__(
        self,
        settings: HttpSettings,
        ready: Callable[[], list[str]],
        metrics: Callable[[], bytes],
        status_json: Callable[[], Awaitable[str]],
        reload: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.ready = ready  # -> problems; empty when ready
        self.metrics = metrics
        self.status_json = status_json
        self.reload = reload
        self.token = os.environ.get(settings.token_env, "") if settings.token_env else ""
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/status", self._status)
        app.router.add_post("/api/reload", self._reload)
        return app

    async def start(self) -> bool:
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            log.error("http_unavailable", host=self.settings.host, port=self.settings.port,
                      error=exc.strerror or str(exc), fix="pick a free port in [http] or stop what uses it")
            return False
        self._runner = runner
        self.port = self.settings.port
        log.info("http_listening", url=f"http://{self.settings.host}:{self.port}/", auth="bearer" if self.token else "none")
        return True

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- handlers ------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if self.token and request.path not in ("/healthz", "/readyz"):
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return web.json_response({"error": "a bearer token is required (Authorization: Bearer ...)"},
                                         status=401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        problems = self.ready()
        body = json.dumps({"ready": not problems, "problems": problems}) + "\n"
        return web.Response(text=body, status=503 if problems else 200, content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(text=await self.status_json(), content_type="application/json")

    async def _reload(self, request: web.Request) -> web.Response:
        self.reload()
        return web.json_response({"reload": "requested"}, status=202)
