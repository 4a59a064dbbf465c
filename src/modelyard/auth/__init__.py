"""Authentication and authorisation: roles, secrets, and the gate every request passes."""
