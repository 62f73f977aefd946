package dev.tokend.client;

import static dev.tokend.client.RepoFiles.interopEnv;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.tokend.v1.IssueRequest;
import dev.tokend.v1.Reason;
import dev.tokend.v1.RevokeRequest;
import dev.tokend.v1.TokenServiceGrpc;
import dev.tokend.v1.VerifyRequest;
import io.grpc.ManagedChannel;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * {@link TokendClient} against a live tokend (the TOKEND_* variables of
 * tests/interop/test_java.py; {@code mvn test -Pinterop}): batched answers equal unary ones,
 * and tokend's /metrics shows the VerifyMany calls (fewer RPCs than verify() calls).
 */
@Tag("interop")
class TokendClientInteropTest {

  private static ManagedChannel channel;
  private static String audience;
  private static List<VerifyRequest> kinds;
  private static List<VerifyOutcome> unaryAnswers;

  @BeforeAll
  static void connect() throws Exception {
    channel = TokendChannels.mtls(interopEnv("TOKEND_ADDR"), Path.of(interopEnv("TOKEND_CA_FILE")),
        Path.of(interopEnv("TOKEND_CLIENT_CERT")), Path.of(interopEnv("TOKEND_CLIENT_KEY")));
    audience = interopEnv("TOKEND_AUDIENCE");
    var stub = TokenServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);
    List<String> valid = new ArrayList<>();
    for (int i = 0; i < 4; i++) {
      valid.add(stub.issue(IssueRequest.newBuilder().setSubject("java-batch-" + i)
          .addAudience(audience).build()).getAccessToken());
    }
    String revoked = stub.issue(IssueRequest.newBuilder().setSubject("java-batch-revoked")
        .addAudience(audience).build()).getAccessToken();
    stub.revoke(RevokeRequest.newBuilder().setToken(revoked).setReason("batch test").build());
    kinds = new ArrayList<>();
    valid.forEach(token -> kinds.add(request(token, audience)));
    kinds.add(request(revoked, audience));
    kinds.add(request(valid.get(0), "interop-other"));   // a wrong audience
    kinds.add(request(valid.get(1), ""));                // INVALID_ARGUMENT
    kinds.add(request("not.a.token", audience));         // malformed
    unaryAnswers = new ArrayList<>();
    for (VerifyRequest request : kinds) {
      unaryAnswers.add(unary(request));
    }
    // The mix holds what it should, as a unary Verify answers it.
    assertTrue(unaryAnswers.get(0).response().getValid());
    assertEquals(Reason.REASON_REVOKED, unaryAnswers.get(4).response().getReason());
    assertEquals(Reason.REASON_WRONG_AUDIENCE, unaryAnswers.get(5).response().getReason());
    assertEquals(io.grpc.Status.Code.INVALID_ARGUMENT, unaryAnswers.get(6).error().code());
    assertFalse(unaryAnswers.get(7).response().getValid());
  }

  @AfterAll
  static void disconnect() throws Exception {
    if (channel != null) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private static VerifyRequest request(String token, String aud) {
    return VerifyRequest.newBuilder().setToken(token).setAudience(aud).build();
  }

  private static VerifyOutcome unary(VerifyRequest request) {
    try {
      return VerifyOutcome.of(TokenServiceGrpc.newBlockingStub(channel)
          .withDeadlineAfter(5, TimeUnit.SECONDS).verify(request));
    } catch (RuntimeException e) {
      return VerifyOutcome.failed(TokendException.from(e));
    }
  }

  private static void assertSameOutcome(VerifyOutcome expected, VerifyOutcome actual) {
    assertEquals(expected.response(), actual.response());
    if (expected.error() != null) {
      TokendException want = expected.error();
      TokendException got = actual.error();
      assertEquals(want.code(), got.code(), got::getMessage);
      assertEquals(want.reason(), got.reason());
      assertEquals(want.domain(), got.domain());
      assertEquals(want.metadata(), got.metadata());
      assertEquals(want.fieldViolations(), got.fieldViolations());
      assertEquals(want.serverMessage(), got.serverMessage());
    }
  }

  /** Calls of one method in tokend's /metrics (all codes), from the JWKS URL's listener. */
  private static long rpcCount(String method) throws IOException, InterruptedException {
    URI metrics = URI.create(interopEnv("TOKEND_JWKS_URL")).resolve("/metrics");
    HttpResponse<String> response = HttpClient.newHttpClient().send(
        HttpRequest.newBuilder(metrics).timeout(Duration.ofSeconds(5)).build(),
        HttpResponse.BodyHandlers.ofString());
    assertEquals(200, response.statusCode());
    String label = "method=\"" + method + "\"";
    double total = 0;
    for (String line : response.body().split("\n")) {
      if (line.startsWith("tokend_rpc_duration_seconds_count{") && line.contains(label)) {
        total += Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
      }
    }
    return Math.round(total);
  }

  /** [Verify, VerifyMany] once the counts stop moving (a call is counted as it ends), ≤ 3 s. */
  private static long[] settledCounts() throws IOException, InterruptedException {
    long[] last = {rpcCount("Verify"), rpcCount("VerifyMany")};
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(3);
    while (System.nanoTime() < end) {
      Thread.sleep(200);
      long[] now = {rpcCount("Verify"), rpcCount("VerifyMany")};
      if (now[0] == last[0] && now[1] == last[1]) {
        return now;
      }
      last = now;
    }
    return last;
  }

  private static List<VerifyOutcome> concurrently(TokendClient client, int calls) throws Exception {
    ExecutorService pool = Executors.newFixedThreadPool(32);
    try {
      List<VerifyRequest> requests = new ArrayList<>();
      for (int i = 0; i < calls; i++) {
        requests.add(kinds.get(i % kinds.size()));
      }
      return ConcurrentVerify.outcomes(pool, client, requests);
    } finally {
      pool.shutdownNow();
    }
  }

  @Test
  void concurrentVerifiesAreBatchedAndAnswerAsUnary() throws Exception {
    TokendClient client = TokendClient.of(channel);
    long[] before = settledCounts();
    int calls = 200;
    List<VerifyOutcome> outcomes = concurrently(client, calls);
    long[] after = settledCounts();
    for (int i = 0; i < calls; i++) {
      assertSameOutcome(unaryAnswers.get(i % kinds.size()), outcomes.get(i));
    }
    long verify = after[0] - before[0];
    long many = after[1] - before[1];
    System.out.printf("%d concurrent verify() calls: %d Verify + %d VerifyMany RPCs%n",
        calls, verify, many);
    assertTrue(many > 0, "no VerifyMany on the server (" + verify + " Verify)");
    assertTrue(verify + many < calls, verify + " Verify + " + many + " VerifyMany for " + calls);
  }

  @Test
  void aLoneVerifyIsAUnaryVerify() throws Exception {
    TokendClient client = TokendClient.of(channel);
    long[] before = settledCounts();
    assertSameOutcome(unaryAnswers.get(0), VerifyOutcome.of(client.verify(kinds.get(0))));
    long[] after = settledCounts();
    assertEquals(before[0] + 1, after[0]);
    assertEquals(before[1], after[1]);
  }

  @Test
  void batchingOffSendsOnlyUnaryVerify() throws Exception {
    TokendClient client = TokendClient.builder(channel).batchVerify(false).build();
    long[] before = settledCounts();
    List<VerifyOutcome> outcomes = concurrently(client, 40);
    long[] after = settledCounts();
    for (int i = 0; i < 40; i++) {
      assertSameOutcome(unaryAnswers.get(i % kinds.size()), outcomes.get(i));
    }
    assertEquals(before[0] + 40, after[0]);
    assertEquals(before[1], after[1]);
  }

  @Test
  void verifyManyAnswersInOrder() throws Exception {
    TokendClient client = TokendClient.of(channel);
    long[] before = settledCounts();
    List<VerifyRequest> requests = new ArrayList<>();
    for (int i = 0; i < 300; i++) {
      requests.add(kinds.get(i % kinds.size()));
    }
    List<VerifyOutcome> outcomes = client.verifyMany(requests, Duration.ofSeconds(5));
    long[] after = settledCounts();
    for (int i = 0; i < requests.size(); i++) {
      assertSameOutcome(unaryAnswers.get(i % kinds.size()), outcomes.get(i));
    }
    assertEquals(before[0], after[0]);
    assertEquals(before[1] + 2, after[1]);   // 256 + 44
  }
}
