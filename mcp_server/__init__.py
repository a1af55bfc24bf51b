"""The MCP door: an MCPServer exposing the swarm's actions as tools and resources."""
