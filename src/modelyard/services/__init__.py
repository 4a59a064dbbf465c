"""Business rules. No HTTP here: handlers parse, call one function, serialise."""
