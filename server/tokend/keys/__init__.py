"""Key custody: Vault Transit (and Vault KV next), rotation, JWKS."""
