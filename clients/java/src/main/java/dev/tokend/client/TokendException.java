package dev.tokend.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A failed tokend call with the details the server sent (google.rpc.Status in the
 * grpc-status-details-bin trailer; docs/errors.md). Match on {@link #reason()}, never on the
 * message. Errors tokend did not answer itself (a deadline, a failed connection) carry no
 * details: the reason is then empty.
 *
 * <pre>{@code
 * try {
 *   stub.issue(request);
 * } catch (StatusRuntimeException e) {
 *   TokendException error = TokendException.from(e);
 *   if (error.reason().equals("RATE_LIMITED")) {
 *     Thread.sleep(error.retryDelay().orElse(Duration.ofSeconds(1)).toMillis());
 *   }
 * }
 * }</pre>
 */
public final class TokendException extends RuntimeException {

  private static final long serialVersionUID = 1L;

  /** ErrorInfo.domain of every error tokend itself answers. */
  public static final String DOMAIN = "tokend.dev";

  /** One request field at fault, named as the proto spells it ("subject", "audience"...). */
  public record FieldViolation(String field, String description) {}

  private final Status.Code code;
  private final String serverMessage;
  private final String reason;
  private final String domain;
  private final Map<String, String> metadata;
  private final List<FieldViolation> fieldViolations;
  private final Duration retryDelay;

  private TokendException(Status.Code code, String serverMessage, String reason, String domain,
      Map<String, String> metadata, List<FieldViolation> fieldViolations, Duration retryDelay,
      Throwable cause) {
    super(code + (reason.isEmpty() ? "" : " (" + reason + ")") + ": " + serverMessage, cause);
    this.code = code;
    this.serverMessage = serverMessage;
    this.reason = reason;
    this.domain = domain;
    this.metadata = Map.copyOf(metadata);
    this.fieldViolations = List.copyOf(fieldViolations);
    this.retryDelay = retryDelay;
  }

  /**
   * The typed error for what a TokenService call threw (a StatusRuntimeException or
   * StatusException, possibly as a cause); any other throwable becomes UNKNOWN without details.
   */
  public static TokendException from(Throwable thrown) {
    if (thrown instanceof TokendException typed) {
      return typed;
    }
    Status status = Status.fromThrowable(thrown);
    com.google.rpc.Status details = StatusProto.fromThrowable(thrown);
    String reason = "";
    String domain = "";
    Map<String, String> metadata = Map.of();
    List<FieldViolation> violations = new ArrayList<>();
    Duration retryDelay = null;
    // A details status with another code than the call's is not about this call (gRPC's rule).
    if (details != null && details.getCode() == status.getCode().value()) {
      for (Any detail : details.getDetailsList()) {
        try {
          if (detail.is(ErrorInfo.class)) {
            ErrorInfo info = detail.unpack(ErrorInfo.class);
            reason = info.getReason();
            domain = info.getDomain();
            metadata = info.getMetadataMap();
          } else if (detail.is(BadRequest.class)) {
            for (BadRequest.FieldViolation v : detail.unpack(BadRequest.class).getFieldViolationsList()) {
              violations.add(new FieldViolation(v.getField(), v.getDescription()));
            }
          } else if (detail.is(RetryInfo.class)) {
            com.google.protobuf.Duration d = detail.unpack(RetryInfo.class).getRetryDelay();
            retryDelay = Duration.ofSeconds(d.getSeconds(), d.getNanos());
          }
        } catch (InvalidProtocolBufferException e) {
          // A detail that does not parse is ignored: the code and message still stand.
        }
      }
    }
    String message = status.getDescription() == null ? "" : status.getDescription();
    return new TokendException(status.getCode(), message, reason, domain, metadata, violations,
        retryDelay, thrown);
  }

  /** The gRPC status code. */
  public Status.Code code() {
    return code;
  }

  /** The server's text, for people. */
  public String serverMessage() {
    return serverMessage;
  }

  /** The stable ErrorInfo reason (RATE_LIMITED, INVALID_SUBJECT...); empty without details. */
  public String reason() {
    return reason;
  }

  /** The ErrorInfo domain ({@link #DOMAIN}). */
  public String domain() {
    return domain;
  }

  /** ErrorInfo metadata: "method", and "field" for a refused field. Never a secret. */
  public Map<String, String> metadata() {
    return metadata;
  }

  /** The request fields at fault (INVALID_ARGUMENT). */
  public List<FieldViolation> fieldViolations() {
    return fieldViolations;
  }

  /** RetryInfo: a retry after this delay may succeed; empty when the server sent none. */
  public Optional<Duration> retryDelay() {
    return Optional.ofNullable(retryDelay);
  }
}
