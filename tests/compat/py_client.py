"""A client on the official Python MCP SDK (mcp 2.x), driven through the bridge.

Usage: py_client.py URL MODE    (MODE: auto | legacy | 2026-07-28)
       py_client.py stdio MODE COMMAND [ARGS...]   (the server is a stdio process, e.g. the shim)

Prints one JSON object: the protocol version it ended up speaking, how many tools it saw, and
what a plain call, a sampling call, an elicitation call and a tools/list_changed subscription
(2026-07-28 only) returned. The tools are server-everything's (prefix `everything__`) and
fixture-everything's (prefix `fx__`); MCP_COMPAT_TOOLS (JSON) names others for the first three.
"""
import asyncio
import json
import os
import sys

from mcp import Client, StdioServerParameters, types


async def sampling(context, params):
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled by the python client"),
        model="py-test-model",
        stop_reason="endTurn",
    )


async def elicitation(context, params):
    return types.ElicitResult(action="accept", content={"name": "Ada"})


def text_of(result):
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def main():
    url, mode = sys.argv[1], sys.argv[2]
    server = url
    if url == "stdio":
        server = StdioServerParameters(command=sys.argv[3], args=sys.argv[4:])
    out = {}
    async with Client(
        server, mode=mode, sampling_callback=sampling, elicitation_callback=elicitation
    ) as c:
        out["version"] = c.protocol_version
        out["tools"] = len((await c.list_tools()).tools)
        # MCP_COMPAT_TOOLS overrides the three calls: {"sum": [name, args], "sampling": ..., ...}
        tools = {
            "sum": ["everything__get-sum", {"a": 2, "b": 3}],
            "sampling": ["everything__trigger-sampling-request", {"prompt": "hi"}],
            "elicitation": ["everything__trigger-elicitation-request", {}],
            **json.loads(os.environ.get("MCP_COMPAT_TOOLS", "{}")),
        }
        for what in ("sum", "sampling", "elicitation"):
            name, args = tools[what]
            out[what] = text_of(await c.call_tool(name, args))
        out["multi_round"] = text_of(await c.call_tool("fx__test_input_required_result_multi_round", {}))
        if mode != "legacy":
            async with c.listen(tools_list_changed=True) as sub:
                out["honored"] = sorted(k for k, v in sub.honored.model_dump(by_alias=True, exclude_none=True).items() if v)
                await c.call_tool("fx__test_trigger_tool_change", {})
                async def first_event():
                    async for event in sub:
                        return type(event).__name__
                out["event"] = await asyncio.wait_for(first_event(), 10)
    print(json.dumps(out))


asyncio.run(main())
