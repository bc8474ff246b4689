"""The MCP server: MemoryOS-MCP's three tools, over stdio or streamable HTTP.

    memoryos mcp                                   # stdio, for Claude Desktop, Cline, Cursor (deploy/mcp.json)
    memoryos mcp --transport http --port 8765      # streamable HTTP at http://127.0.0.1:8765/mcp
    python -m memoryos_workers.apps.mcp ...        # the same without the console script

Tools (as MemoryOS-MCP names and shapes them): `add_memory`, `retrieve_memory`, `get_user_profile`.
Each call is about MEMORYOS_USER_ID (and MEMORYOS_ASSISTANT_ID) unless it names a `user_id`. Over HTTP
the keys of MEMORYOS_API_KEYS are required and each key's tenant has users of its own (`tenancy`).

One module per concern: `server` runs a transport and shuts the memory down after it; `service` holds
the process's memory (`Memoryos.from_settings()`, opened in the background); `tools` defines the tools
and their result shapes; `tenancy` checks HTTP keys and keeps each tenant's ids in its namespace (the
HTTP API's rule); `arguments` turns schemas' checks into tool errors naming the field; `sdk`
hides the MCP SDK's two generations; `logging_setup` keeps stdout for the protocol.
"""
