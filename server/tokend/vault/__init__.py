"""The Vault client side: hvac construction and errors, login and renewal, the event-loop
sign transport, and the local OpenBao behind `tokend dev`."""
