"""An OAuth client on the official Python MCP SDK (mcp 2.x): registers dynamically with the
bridge's authorization server, follows the authorization URL (the test opened a pairing window,
so the bridge redirects at once), and lists and calls tools through the public URL.

Usage: py_oauth_client.py URL MODE TOOL    (MODE: legacy | 2026-07-28)

Prints one JSON object: the tool names it saw and the text of a call of TOOL ({"message": "hi"}).
"""
import asyncio
import json
import sys
from urllib.parse import parse_qs, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata


class Memory:
    def __init__(self):
        self.tokens = None
        self.info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.info

    async def set_client_info(self, info):
        self.info = info


async def main():
    url, mode, tool = sys.argv[1], sys.argv[2], sys.argv[3]
    redirect = {}

    async def redirect_handler(authorization_url):
        async with httpx2.AsyncClient(follow_redirects=False) as h:
            r = await h.get(authorization_url)
        location = r.headers.get("location")
        if r.status_code != 302 or not location:
            raise RuntimeError(f"authorization answered {r.status_code}: {r.text[:300]}")
        q = parse_qs(urlparse(location).query)
        if "error" in q:
            raise RuntimeError(f"authorization refused: {q}")
        redirect.update({k: v[0] for k, v in q.items()})

    async def callback_handler():
        return AuthorizationCodeResult(
            code=redirect["code"], state=redirect.get("state"), iss=redirect.get("iss")
        )

    auth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="python-sdk-connector",
            redirect_uris=["http://127.0.0.1:33418/callback"],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=Memory(),
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    out = {}
    async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as c:
            out["version"] = c.protocol_version
            out["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
            result = await c.call_tool(tool, {"message": "hi"})
            out["call"] = " ".join(
                x.text for x in result.content if getattr(x, "type", "") == "text"
            )
    out["iss"] = redirect.get("iss")
    print(json.dumps(out))


asyncio.run(main())
