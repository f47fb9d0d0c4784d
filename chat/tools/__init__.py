"""Tools: the operator's MCP servers (``mcp_client``, ``config``), the tools a conversation may use
(``registry``), the loop that runs them (``loop``), and tool calls for models without a tool API
(``text_form``) or from OpenAI clients (``offer``). See docs/tools.md."""
