package dev.tokend.client;

import dev.tokend.v1.Reason;
import java.util.Objects;

/**
 * A token was refused. {@link #reason()} uses the same {@link Reason} values as tokend's
 * {@code Verify} RPC. The message never contains the token.
 */
public final class InvalidTokenException extends Exception {

  private static final long serialVersionUID = 1L;

  /** Why the token was refused. */
  private final Reason reason;

  /**
   * Creates the exception.
   *
   * @param reason why the token was refused
   * @param message what failed, for logs (must not contain the token)
   * @param cause the underlying error, or {@code null}
   */
  public InvalidTokenException(Reason reason, String message, Throwable cause) {
    super(reason + ": " + message, cause);
    this.reason = Objects.requireNonNull(reason, "reason");
  }

  /**
   * Why the token was refused.
   *
   * @return the reason, never {@code REASON_UNSPECIFIED}
   */
  public Reason reason() {
    return reason;
  }
}
