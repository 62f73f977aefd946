package dev.tokend.client;

import static dev.tokend.client.RepoFiles.interopEnv;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.nimbusds.jwt.JWTClaimsSet;
import dev.tokend.v1.IssueRequest;
import dev.tokend.v1.IssueResponse;
import dev.tokend.v1.Reason;
import dev.tokend.v1.RefreshRequest;
import dev.tokend.v1.RevokeRequest;
import dev.tokend.v1.TokenServiceGrpc;
import dev.tokend.v1.TokenServiceGrpc.TokenServiceBlockingStub;
import dev.tokend.v1.VerifyRequest;
import dev.tokend.v1.VerifyResponse;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.net.URL;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Against a live tokend over mutual TLS, named by the TOKEND_* variables that
 * tests/conftest.py sets. Runs only with {@code mvn test -Pinterop}.
 */
@Tag("interop")
class TokendInteropTest {

  /** The SPIFFE id in the interop client certificate: tokend's client_id for this caller. */
  private static final String CLIENT_ID = "spiffe://tokend.test/interop";

  private static ManagedChannel channel;
  private static TokendVerifier verifier;
  private static String audience;

  @BeforeAll
  static void connect() throws Exception {
    channel = TokendChannels.mtls(interopEnv("TOKEND_ADDR"), Path.of(interopEnv("TOKEND_CA_FILE")),
        Path.of(interopEnv("TOKEND_CLIENT_CERT")), Path.of(interopEnv("TOKEND_CLIENT_KEY")));
    audience = interopEnv("TOKEND_AUDIENCE");
    verifier = TokendVerifier.builder().issuer(interopEnv("TOKEND_ISSUER")).audience(audience)
        .jwksUrl(new URL(interopEnv("TOKEND_JWKS_URL"))).build();
  }

  @AfterAll
  static void disconnect() throws Exception {
    // Null when connect() failed: its error is the one to report.
    if (verifier != null) {
      verifier.close();
    }
    if (channel != null) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /** A required variable; missing means a misconfigured run, which must fail, not skip. */

  /** A stub with a fresh 10 s deadline (a deadline is fixed when the stub is made). */
  private static TokenServiceBlockingStub tokend() {
    return TokenServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);
  }

  private static IssueResponse issue(String subject, boolean withRefresh) {
    return tokend().issue(IssueRequest.newBuilder().setSubject(subject).addAudience(audience)
        .addScopes("orders:read").addScopes("orders:write")
        .setIncludeRefreshToken(withRefresh).build());
  }

  private static VerifyResponse verifyRemotely(String token, String audience) {
    return tokend().verify(
        VerifyRequest.newBuilder().setToken(token).setAudience(audience).build());
  }

  @Test
  void issueVerifyRefreshRevoke() throws Exception {
    IssueResponse issued = issue("java-interop", true);
    assertEquals("Bearer", issued.getTokenType());
    assertFalse(issued.getRefreshToken().isEmpty());
    JWTClaimsSet claims = verifier.verify(issued.getAccessToken(), List.of("orders:read"));
    assertEquals("java-interop", claims.getSubject());
    assertEquals(issued.getJti(), claims.getJWTID());
    assertEquals(CLIENT_ID, claims.getStringClaim("client_id"));

    VerifyResponse remote = verifyRemotely(issued.getAccessToken(), audience);
    assertTrue(remote.getValid(), remote::toString);
    assertEquals(CLIENT_ID, remote.getClaims().getFieldsOrThrow("client_id").getStringValue());

    IssueResponse refreshed = tokend().refresh(RefreshRequest.newBuilder()
        .setRefreshToken(issued.getRefreshToken()).addScopes("orders:read").build());
    assertNotEquals(issued.getRefreshToken(), refreshed.getRefreshToken());
    JWTClaimsSet narrowed = verifier.verify(refreshed.getAccessToken());
    assertEquals("orders:read", narrowed.getStringClaim("scope"));

    tokend().revoke(RevokeRequest.newBuilder().setToken(refreshed.getAccessToken())
        .setReason("java interop test").build());
    VerifyResponse revoked = verifyRemotely(refreshed.getAccessToken(), audience);
    assertFalse(revoked.getValid());
    assertEquals(Reason.REASON_REVOKED, revoked.getReason());
  }

  @Test
  void aSpentRefreshTokenIsRefused() {
    IssueResponse issued = issue("java-interop-reuse", true);
    RefreshRequest refresh =
        RefreshRequest.newBuilder().setRefreshToken(issued.getRefreshToken()).build();
    tokend().refresh(refresh);
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> tokend().refresh(refresh));
    assertEquals(Status.Code.UNAUTHENTICATED, e.getStatus().getCode());
  }

  @Test
  void aTamperedTokenIsRefusedLocallyAndRemotely() throws Exception {
    String token = issue("java-interop-tamper", false).getAccessToken();
    String[] parts = token.split("\\.");
    // Swap in another token's claims: well-formed, wrongly signed.
    parts[1] = issue("mallory", false).getAccessToken().split("\\.")[1];
    String forged = String.join(".", parts);
    InvalidTokenException e =
        assertThrows(InvalidTokenException.class, () -> verifier.verify(forged));
    assertEquals(Reason.REASON_BAD_SIGNATURE, e.reason());
    assertEquals(Reason.REASON_BAD_SIGNATURE, verifyRemotely(forged, audience).getReason());
  }

  /**
   * An attacker's look at real tokens from the live tokend: encodings of the same signed
   * bytes that lenient decoders accept (issue 12 found the Java verifier accepting each) are
   * refused by the local verifier, as by tokend's own Verify.
   */
  @Test
  void reencodedRealTokensAreRefusedLocallyAndRemotely() throws Exception {
    String token = issue("java-interop-encoding", false).getAccessToken();
    assertEquals("java-interop-encoding", verifier.verify(token).getSubject());
    int dot = token.lastIndexOf('.');
    String signature = token.substring(dot + 1);
    String alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char last = signature.charAt(signature.length() - 1);
    int unusedMask = signature.length() % 4 == 2 ? 0x0F : 0x03;
    String nonCanonical = token.substring(0, token.length() - 1)
        + alphabet.charAt(alphabet.indexOf(last) | (unusedMask & 1));
    List<String> variants = new java.util.ArrayList<>(List.of(
        " " + token, token + "\n", token + "=".repeat((4 - signature.length() % 4) % 4),
        token.substring(0, dot + 5) + "\u200b" + token.substring(dot + 5),
        token.substring(0, dot + 5) + " " + token.substring(dot + 5),
        token.substring(0, dot + 1) + signature.replace('-', '+').replace('_', '/')));
    if (signature.length() % 4 != 0) {
      variants.add(nonCanonical);
    }
    for (String variant : variants) {
      if (variant.equals(token)) {
        continue; // e.g. no '-' or '_' in this signature: nothing to re-encode
      }
      InvalidTokenException e =
          assertThrows(InvalidTokenException.class, () -> verifier.verify(variant));
      assertEquals(Reason.REASON_MALFORMED, e.reason(), e::getMessage);
      assertFalse(verifyRemotely(variant, audience).getValid());
    }
  }

  @Test
  void anotherAudienceIsRefusedLocallyAndRemotely() throws Exception {
    String token = issue("java-interop-aud", false).getAccessToken();
    try (TokendVerifier billing = TokendVerifier.builder().issuer(interopEnv("TOKEND_ISSUER"))
        .audience("billing").jwksUrl(new URL(interopEnv("TOKEND_JWKS_URL"))).build()) {
      InvalidTokenException e =
          assertThrows(InvalidTokenException.class, () -> billing.verify(token));
      assertEquals(Reason.REASON_WRONG_AUDIENCE, e.reason());
    }
    assertEquals(Reason.REASON_WRONG_AUDIENCE, verifyRemotely(token, "billing").getReason());
  }

  @Test
  void keysFromGetJwksVerifyToo() throws Exception {
    String token = issue("java-interop-getjwks", false).getAccessToken();
    TokenServiceBlockingStub stub = TokenServiceGrpc.newBlockingStub(channel);
    try (TokendVerifier fromRpc = TokendVerifier.builder().issuer(interopEnv("TOKEND_ISSUER"))
        .audience(audience).keySource(TokendJwks.fromService(stub)).build()) {
      assertEquals("java-interop-getjwks", fromRpc.verify(token).getSubject());
    }
  }
}
