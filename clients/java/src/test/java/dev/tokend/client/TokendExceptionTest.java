package dev.tokend.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import com.google.rpc.Code;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

class TokendExceptionTest {

  @Test
  void readsEveryDetail() {
    com.google.rpc.Status status = com.google.rpc.Status.newBuilder()
        .setCode(Code.INVALID_ARGUMENT_VALUE).setMessage("subject is required")
        .addDetails(Any.pack(ErrorInfo.newBuilder().setReason("INVALID_SUBJECT")
            .setDomain(TokendException.DOMAIN).putMetadata("method", "Issue").build()))
        .addDetails(Any.pack(BadRequest.newBuilder().addFieldViolations(
            BadRequest.FieldViolation.newBuilder().setField("subject")
                .setDescription("subject is required")).build()))
        .addDetails(Any.pack(RetryInfo.newBuilder().setRetryDelay(
            com.google.protobuf.Duration.newBuilder().setSeconds(1).setNanos(500_000_000)).build()))
        .build();
    TokendException error = TokendException.from(StatusProto.toStatusRuntimeException(status));
    assertEquals(Status.Code.INVALID_ARGUMENT, error.code());
    assertEquals("INVALID_SUBJECT", error.reason());
    assertEquals(TokendException.DOMAIN, error.domain());
    assertEquals("Issue", error.metadata().get("method"));
    assertEquals(List.of(new TokendException.FieldViolation("subject", "subject is required")),
        error.fieldViolations());
    assertEquals(Duration.ofMillis(1500), error.retryDelay().orElseThrow());
    assertEquals("subject is required", error.serverMessage());
    assertTrue(error.getMessage().contains("INVALID_SUBJECT"));
  }

  @Test
  void anErrorWithoutDetailsHasNoReason() {
    TokendException error = TokendException.from(
        Status.DEADLINE_EXCEEDED.withDescription("deadline").asRuntimeException());
    assertEquals(Status.Code.DEADLINE_EXCEEDED, error.code());
    assertEquals("", error.reason());
    assertTrue(error.retryDelay().isEmpty());
    assertEquals(Status.Code.UNKNOWN, TokendException.from(new IllegalStateException("x")).code());
  }
}
