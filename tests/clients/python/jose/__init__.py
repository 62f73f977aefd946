"""Tests of tokend_client.jose (clients/python/tokend_client/jose/)."""
