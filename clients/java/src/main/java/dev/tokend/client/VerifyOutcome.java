package dev.tokend.client;

import dev.tokend.v1.VerifyResponse;

/**
 * One answer of {@link TokendClient#verifyMany}: exactly one of {@link #response()} (what
 * Verify answered: valid, or not valid with a reason) and {@link #error()} (what a single
 * {@link TokendClient#verify} would have thrown, e.g. INVALID_ARGUMENT for an empty audience).
 *
 * @param response the server's answer, or null when {@code error} is set
 * @param error the error, or null when {@code response} is set
 */
public record VerifyOutcome(VerifyResponse response, TokendException error) {

  /** Checks that exactly one of the two is set. */
  public VerifyOutcome {
    if ((response == null) == (error == null)) {
      throw new IllegalArgumentException("a VerifyOutcome holds a response or an error, not both");
    }
  }

  /**
   * @param response the answer
   * @return an outcome holding it
   */
  public static VerifyOutcome of(VerifyResponse response) {
    return new VerifyOutcome(response, null);
  }

  /**
   * @param error the error
   * @return an outcome holding it
   */
  public static VerifyOutcome failed(TokendException error) {
    return new VerifyOutcome(null, error);
  }

  /** @return true when this holds a response (valid or not), false for an error */
  public boolean ok() {
    return response != null;
  }

  /**
   * The response, as {@link TokendClient#verify} returns it.
   *
   * @return the response
   * @throws TokendException the error this outcome holds
   */
  public VerifyResponse orThrow() {
    if (error != null) {
      throw error;
    }
    return response;
  }
}
