"""Tools: the operator's MCP servers (``mcp_client``, ``config``), the tools a conversation may use
(``registry``), the loop that runs them (``loop``), and tool calls from OpenAI clients (``offer``).
Models without a tool API get tools as prompt text through ``chat.backends.tool_text``. See
docs/tools.md."""
