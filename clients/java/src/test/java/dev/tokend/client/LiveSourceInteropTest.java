package dev.tokend.client;

import static dev.tokend.client.RepoFiles.interopEnv;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.nimbusds.jose.util.Base64URL;
import com.nimbusds.jose.util.JSONObjectUtils;
import dev.tokend.v1.IssueRequest;
import dev.tokend.v1.IssueResponse;
import dev.tokend.v1.Reason;
import dev.tokend.v1.RevokeRequest;
import dev.tokend.v1.TokenServiceGrpc;
import dev.tokend.v1.TokenServiceGrpc.TokenServiceBlockingStub;
import io.grpc.ManagedChannel;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * A {@link LiveSource}-backed verifier against a live tokend of its own (tests/interop/
 * test_java.py::test_java_live_source): a revocation on the server makes the local verifier
 * refuse within a second, and a key rotated in on the server verifies without a restart.
 * Runs only with {@code mvn test -Plive}.
 */
@Tag("live")
class LiveSourceInteropTest {

  private static ManagedChannel channel;
  private static LiveSource live;
  private static TokendVerifier verifier;
  private static String audience;

  @BeforeAll
  static void connect() throws Exception {
    channel = TokendChannels.mtls(interopEnv("TOKEND_ADDR"), Path.of(interopEnv("TOKEND_CA_FILE")),
        Path.of(interopEnv("TOKEND_CLIENT_CERT")), Path.of(interopEnv("TOKEND_CLIENT_KEY")));
    audience = interopEnv("TOKEND_AUDIENCE");
    live = LiveSource.builder(channel).build();
    verifier = TokendVerifier.builder().issuer(interopEnv("TOKEND_ISSUER")).audience(audience)
        .keySource(live).build();
  }

  @AfterAll
  static void disconnect() throws Exception {
    if (live != null) {
      live.close();
    }
    if (channel != null) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private static TokenServiceBlockingStub tokend() {
    return TokenServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);
  }

  private static IssueResponse issue(String subject) {
    return tokend().issue(IssueRequest.newBuilder().setSubject(subject).addAudience(audience)
        .build());
  }

  /** Seconds until the verifier refuses {@code token} as revoked; fails after {@code limit}. */
  private static double refusedWithin(String token, Duration limit) throws Exception {
    long start = System.nanoTime();
    while (System.nanoTime() - start < limit.toNanos()) {
      try {
        verifier.verify(token);
      } catch (InvalidTokenException e) {
        assertEquals(Reason.REASON_REVOKED, e.reason(), e.getMessage());
        return (System.nanoTime() - start) / 1e9;
      }
      Thread.sleep(5);
    }
    return fail("still accepted after " + limit);
  }

  @Test
  void aRevokedJtiIsRefusedWithinASecond() throws Exception {
    IssueResponse issued = issue("java-live-jti");
    assertEquals("java-live-jti", verifier.verify(issued.getAccessToken()).getSubject());
    IssueResponse other = issue("java-live-jti");
    tokend().revoke(RevokeRequest.newBuilder().setJti(issued.getJti()).setReason("test").build());
    double seconds = refusedWithin(issued.getAccessToken(), Duration.ofSeconds(1));
    assertTrue(seconds < 1.0, "took " + seconds + " s");
    record("jti", seconds);
    verifier.verify(other.getAccessToken()); // only that jti
    // Without the live source (as before it existed) the revoked token still verifies.
    try (TokendVerifier plain = TokendVerifier.builder().issuer(interopEnv("TOKEND_ISSUER"))
        .audience(audience).jwksUrl(new java.net.URL(interopEnv("TOKEND_JWKS_URL"))).build()) {
      assertEquals("java-live-jti", plain.verify(issued.getAccessToken()).getSubject());
    }
  }

  @Test
  void aRevokedSubjectIsRefusedWithinASecondAndItsNewTokensAreNot() throws Exception {
    IssueResponse issued = issue("java-live-mallory");
    verifier.verify(issued.getAccessToken());
    tokend().revoke(RevokeRequest.newBuilder().setSubject("java-live-mallory")
        .setReason("test").build());
    double seconds = refusedWithin(issued.getAccessToken(), Duration.ofSeconds(1));
    assertTrue(seconds < 1.0, "took " + seconds + " s");
    record("subject", seconds);
    Thread.sleep(1100); // iat has one-second resolution: the next token is newer
    assertEquals("java-live-mallory",
        verifier.verify(issue("java-live-mallory").getAccessToken()).getSubject());
  }

  @Test
  void aRotatedKeyVerifiesWithoutARestart() throws Exception {
    String before = kid(issue("java-live-rotate").getAccessToken());
    HttpResponse<String> rotated = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
            URI.create(interopEnv("TOKEND_BAO_ADDR") + "/v1/transit/keys/" + interopEnv("TOKEND_KEY_NAME")
                + "/rotate"))
            .header("X-Vault-Token", interopEnv("TOKEND_BAO_TOKEN"))
            .POST(HttpRequest.BodyPublishers.noBody()).build(),
        HttpResponse.BodyHandlers.ofString());
    assertTrue(rotated.statusCode() / 100 == 2, "rotate: HTTP " + rotated.statusCode());
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
    String token;
    while (true) {
      token = issue("java-live-rotate").getAccessToken();
      if (!kid(token).equals(before)) {
        break;
      }
      assertTrue(System.nanoTime() < deadline, "tokend never signed with the new key");
      Thread.sleep(50);
    }
    assertNotEquals(before, kid(token));
    assertEquals("java-live-rotate", verifier.verify(token).getSubject());
    assertTrue(live.keys().get(kid(token)) != null, "the new key is in the live set");
  }

  /** Keeps the measured delay in target/live-revocation-latency.txt for the record. */
  private static void record(String kind, double seconds) throws java.io.IOException {
    java.nio.file.Files.writeString(Path.of("target/live-revocation-latency.txt"),
        String.format("%s revocation refused after %.3f s%n", kind, seconds),
        java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
  }

  private static String kid(String token) throws Exception {
    String header = new String(Base64URL.from(token.substring(0, token.indexOf('.'))).decode(),
        java.nio.charset.StandardCharsets.UTF_8);
    return JSONObjectUtils.parse(header).get("kid").toString();
  }
}
