"""The MCP SDK's server class and tool error, whichever generation is installed: mcp 2.x calls FastMCP
`MCPServer`; 1.x (>= 1.9) still has `FastMCP`. Their constructors, tool decorators and the `Context` a
tool receives (with the HTTP request that carried the call) are alike."""

from __future__ import annotations

try:
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver import MCPServer as ServerClass
    from mcp.server.mcpserver.exceptions import ToolError

    SDK_V2 = True
except ImportError:  # pragma: no cover - mcp 1.x
    from mcp.server.fastmcp import Context  # type: ignore[no-redef]
    from mcp.server.fastmcp import FastMCP as ServerClass  # type: ignore[no-redef]
    from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[no-redef]

    SDK_V2 = False

__all__ = ["SDK_V2", "Context", "ServerClass", "ToolError"]
