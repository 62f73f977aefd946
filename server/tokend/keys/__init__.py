"""Key custody: Vault Transit or Vault KV, rotation phases, JWKS."""
