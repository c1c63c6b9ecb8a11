"""A real headless Chromium against a real `stellwerk serve`: what the browser tests and
`scripts/screenshots` share.

The browser is Debian's `chromium` (`/usr/bin/chromium`, from `scripts/test-servers`), driven by
the `playwright` package over the DevTools protocol; no browser is ever downloaded. The gateway is
the process `tests/e2e/test_gateway_process.py` starts, in front of the fake upstreams.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.async_api import Browser, ConsoleMessage, Page, Playwright, Request, Response

from ..e2e.test_gateway_process import CLIENT_KEY, Process, start_gateway

__all__ = ["CLIENT_KEY", "Process", "start_gateway"]

# Debian's chromium; `$STELLWERK_CHROMIUM` names another build of Chromium (not a download)
CHROMIUM = os.environ.get("STELLWERK_CHROMIUM") or "/usr/bin/chromium"
# Without the background-networking flags Chromium reaches out to Google's services, which
# a machine without a network refuses; the rest keep a throwaway profile quiet and fast.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_KEY = "sk-stellwerk-e2e-admin-9876543210"


def chromium_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    if shutil.which(CHROMIUM) is None:
        return f"{CHROMIUM} is missing: bash scripts/test-servers installs chromium"
    return None


async def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless, with a fresh profile (Playwright makes one per launch)."""
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)


@dataclass
class Watch:
    """What went wrong on a page: console errors, uncaught exceptions, failed requests and
    answers of 400 or more, except the answers a test provokes on purpose (`allow`)."""

    problems: list[str] = field(default_factory=list)
    allowed: set[tuple[str, int]] = field(default_factory=set)  # (path, status)

    def allow(self, path: str, status: int) -> None:
        self.allowed.add((path, status))

    def attach(self, page: Page) -> Watch:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)
        return self

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        # Chromium also logs each answer of 400 or more: "Failed to load resource: the server
        # responded with a status of 403 (Forbidden)", located at the resource's URL
        found = re.search(r"status of (\d{3})", message.text)
        url = str(message.location.get("url", ""))
        if found and (urlsplit(url).path, int(found[1])) in self.allowed:
            return
        self.problems.append(f"console error: {message.text} ({url})")

    def _failed(self, request: Request) -> None:
        failure = request.failure or ""
        if urlsplit(request.url).path == "/api/events" and "ERR_ABORTED" in failure:
            return  # a page that closes (or takes a new key) ends its event stream on purpose
        self.problems.append(f"request failed: {request.method} {request.url}: {failure}")

    def _response(self, response: Response) -> None:
        path = urlsplit(response.url).path
        if response.status >= 400 and (path, response.status) not in self.allowed:
            self.problems.append(f"HTTP {response.status}: {response.request.method} {path}")

    def check(self) -> None:
        assert not self.problems, "\n".join(self.problems)
