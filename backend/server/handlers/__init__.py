"""Job handlers, one module per job kind (thin: they adapt the protocol to backend functions)."""
