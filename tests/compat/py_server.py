"""A server on the official Python MCP SDK (mcp 2.x): one tool, one resource, one prompt.

Usage: py_server.py stdio | py_server.py http PORT
"""
import sys

from mcp.server import MCPServer

mcp = MCPServer("py-compat")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@mcp.resource("demo://hello")
def hello() -> str:
    return "Hello from Python"


@mcp.prompt()
def greet(name: str) -> str:
    return f"Please greet {name}."


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        mcp.run()
