package dev.tokend.client;

import com.nimbusds.jwt.proc.BadJWTException;
import dev.tokend.v1.Reason;

/**
 * A refusal with its {@link Reason}, thrown from inside Nimbus's processing pipeline
 * (which only lets {@code BadJOSEException}s through) and turned into an {@link
 * InvalidTokenException} at the {@link TokendVerifier} boundary.
 */
final class Rejection extends BadJWTException {

  private static final long serialVersionUID = 1L;

  private final Reason reason;

  Rejection(Reason reason, String message) {
    super(message);
    this.reason = reason;
  }

  InvalidTokenException toInvalidToken() {
    return new InvalidTokenException(reason, getMessage(), null);
  }
}
