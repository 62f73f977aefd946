package dev.tokend.client;

/**
 * The verification keys could not be obtained (JWKS endpoint or GetJwks unreachable, or an
 * invalid key set), or a {@link LiveSource} has lost tokend's revocation feed for longer than
 * it may under the fail-closed policy, so no verdict on the token is possible. Unlike {@link
 * InvalidTokenException} this says nothing about the token: answer "try again later"
 * (e.g. HTTP 503), not "unauthorized".
 */
public final class KeySetUnavailableException extends RuntimeException {

  private static final long serialVersionUID = 1L;

  /**
   * Creates the exception.
   *
   * @param message what could not be obtained
   * @param cause the underlying error
   */
  public KeySetUnavailableException(String message, Throwable cause) {
    super(message, cause);
  }
}
