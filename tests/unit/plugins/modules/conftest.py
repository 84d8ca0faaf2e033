# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures shared by the whole-module tests."""

from __future__ import annotations

import threading
from http.server import HTTPServer

import pytest


@pytest.fixture
def serve_loopback():
    """Start stand-in HTTP servers on 127.0.0.1: ``serve_loopback(HandlerClass)`` returns the port.

    Every server started this way is shut down and closed when the test ends.
    """
    servers = []

    def start(handler):
        server = HTTPServer(('127.0.0.1', 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True).start()
        servers.append(server)
        return server.server_port

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
