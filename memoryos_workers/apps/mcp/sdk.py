"""The MCP SDK's server class and tool error, whichever generation is installed: mcp 2.x calls FastMCP
`MCPServer`; 1.x (>= 1.9) still has `FastMCP`. Their constructors and tool decorators are alike."""

from __future__ import annotations

try:
    from mcp.server.mcpserver import MCPServer as ServerClass
    from mcp.server.mcpserver.exceptions import ToolError

    SDK_V2 = True
except ImportError:  # pragma: no cover - mcp 1.x
    from mcp.server.fastmcp import FastMCP as ServerClass  # type: ignore[no-redef]
    from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[no-redef]

    SDK_V2 = False

__all__ = ["SDK_V2", "ServerClass", "ToolError"]
