"""The client's commands, one module per resource."""
