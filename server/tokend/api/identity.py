"""Who is calling: the identity recorded as `client_id` in the tokens a caller obtains."""

from __future__ import annotations

import grpc


def caller_identity(context: grpc.aio.ServicerContext, default: str) -> str:
    """The verified client certificate's first SAN, else its CN, else `default`.

    Plaintext (loopback, dev) connections carry no certificate and get `default`.
    """
    auth = context.auth_context()
    for key in ("x509_subject_alternative_name", "x509_common_name"):
        values = auth.get(key)
        if values:
            return values[0].decode()
    return default
