package dev.tokend.client;

import static dev.tokend.client.RepoFiles.interopEnv;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.tokend.v1.IssueRequest;
import dev.tokend.v1.TokenServiceGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Typed errors from a live tokend: the servers of tests/support/error_servers.py, named by the
 * TOKEND_ERRORS_* variables. Runs only with {@code mvn test -Perrors}
 * (tests/interop/test_java.py::test_java_error_details).
 */
@Tag("errors")
class TokendErrorsInteropTest {

  private static ManagedChannel channel(String caller) throws Exception {
    String who = caller.toUpperCase(Locale.ROOT);
    return TokendChannels.mtls(interopEnv("TOKEND_ERRORS_ADDR_MAIN"), Path.of(interopEnv("TOKEND_ERRORS_CA_FILE")),
        Path.of(interopEnv("TOKEND_ERRORS_CERT_" + who)), Path.of(interopEnv("TOKEND_ERRORS_KEY_" + who)));
  }

  private static TokendException failure(ManagedChannel channel, IssueRequest request, int attempts) {
    var stub = TokenServiceGrpc.newBlockingStub(channel);
    for (int i = 0; i < attempts; i++) {
      try {
        stub.withDeadlineAfter(20, TimeUnit.SECONDS).issue(request);
      } catch (StatusRuntimeException e) {
        return TokendException.from(e);
      }
    }
    return fail("every one of " + attempts + " attempts succeeded");
  }

  @Test
  void invalidArgumentNamesTheField() throws Exception {
    ManagedChannel channel = channel("main");
    try {
      TokendException error = failure(channel, IssueRequest.newBuilder()
          .addAudience(interopEnv("TOKEND_ERRORS_AUDIENCE")).build(), 1);
      assertEquals(Status.Code.INVALID_ARGUMENT, error.code());
      assertEquals("INVALID_SUBJECT", error.reason());
      assertEquals(TokendException.DOMAIN, error.domain());
      assertEquals("Issue", error.metadata().get("method"));
      assertEquals("subject", error.fieldViolations().get(0).field());
      assertTrue(error.retryDelay().isEmpty());
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  @Test
  void rateLimitedSaysWhenToRetry() throws Exception {
    ManagedChannel channel = channel("limited");
    try {
      // The limited caller's bucket holds one call (burst 1, 0.05 per second).
      TokendException error = failure(channel, IssueRequest.newBuilder().setSubject("alice")
          .addAudience(interopEnv("TOKEND_ERRORS_AUDIENCE")).build(), 3);
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, error.code());
      assertEquals("RATE_LIMITED", error.reason());
      Duration delay = error.retryDelay().orElse(null);
      assertNotNull(delay, "no RetryInfo");
      assertTrue(!delay.isNegative() && !delay.isZero() && delay.compareTo(Duration.ofSeconds(20)) <= 0,
          "retry delay " + delay);
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
