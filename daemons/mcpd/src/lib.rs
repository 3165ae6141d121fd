//! The node's tools for agents over MCP: the tool catalogue, schemas, workspace-confined file access, the rmcp server
