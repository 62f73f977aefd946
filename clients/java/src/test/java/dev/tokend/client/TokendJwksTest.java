package dev.tokend.client;

import static dev.tokend.client.TestTokens.AUDIENCE;
import static dev.tokend.client.TestTokens.ISSUER;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.jwk.JWKSet;
import com.sun.net.httpserver.HttpServer;
import dev.tokend.v1.Reason;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The JWKS-over-HTTP source against a real HTTP server on loopback. */
class TokendJwksTest {

  /** Two key sets whose ES256 keys share their kid. */
  private static TestTokens tokens;
  private static TestTokens rotated;

  private final AtomicReference<JWKSet> served = new AtomicReference<>(new JWKSet());
  private final AtomicInteger fetches = new AtomicInteger();
  private HttpServer server;

  @BeforeAll
  static void generateKeys() throws Exception {
    tokens = TestTokens.shared();
    rotated = TestTokens.generate("ES256");
  }

  @BeforeEach
  void startServer() throws IOException {
    server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
    server.createContext("/.well-known/jwks.json", exchange -> {
      fetches.incrementAndGet();
      byte[] body = served.get().toString().getBytes(StandardCharsets.UTF_8);
      exchange.getResponseHeaders().set("Content-Type", "application/json");
      exchange.sendResponseHeaders(200, body.length);
      try (OutputStream out = exchange.getResponseBody()) {
        out.write(body);
      }
    });
    server.start();
  }

  @AfterEach
  void stopServer() {
    server.stop(0);
  }

  private URL jwksUrl() throws IOException {
    return new URL("http://127.0.0.1:" + server.getAddress().getPort() + "/.well-known/jwks.json");
  }

  private TokendVerifier verifier() throws IOException {
    return TokendVerifier.builder().issuer(ISSUER).audience(AUDIENCE).jwksUrl(jwksUrl()).build();
  }

  @Test
  void cachesTheKeySet() throws Exception {
    served.set(tokens.publicKeys());
    try (TokendVerifier verifier = verifier()) {
      verifier.verify(tokens.mint("ES256"));
      verifier.verify(tokens.mint("RS256"));
      assertEquals(1, fetches.get(), "the key set is cached");

      served.set(rotated.publicKeys());
      // A known kid is answered from the cache: no fetch per token. (tokend's kids name key
      // versions, so a rotation brings a new kid, which refreshesOnAnUnknownKeyId covers.)
      String signedByNewKey = rotated.mint("ES256");
      TokendVerifierTest.assertRefused(Reason.REASON_BAD_SIGNATURE, verifier, signedByNewKey);
      assertEquals(1, fetches.get());
    }
  }

  @Test
  void refreshesOnAnUnknownKeyId() throws Exception {
    served.set(new JWKSet(tokens.publicKeys().getKeyByKeyId("ES256")));
    try (FetchingKeySource keys =
            FetchingKeySource.fromUrl(jwksUrl(), null, Duration.ofMillis(100));
        TokendVerifier verifier = TokendVerifier.builder().issuer(ISSUER).audience(AUDIENCE)
            .keySource(keys).build()) {
      verifier.verify(tokens.mint("ES256"));
      served.set(tokens.publicKeys()); // a new key (kid EdDSA) is published
      Thread.sleep(150); // past the rate limit, which counts from the first fetch too
      verifier.verify(tokens.mint("EdDSA"));
      assertEquals(2, fetches.get());
    }
  }

  @Test
  void rateLimitsRefreshesForUnknownKeyIds() throws Exception {
    served.set(new JWKSet(tokens.publicKeys().getKeyByKeyId("ES256")));
    try (FetchingKeySource keys = FetchingKeySource.fromUrl(jwksUrl(), null, Duration.ofHours(1));
        TokendVerifier verifier = TokendVerifier.builder().issuer(ISSUER).audience(AUDIENCE)
            .keySource(keys).build()) {
      verifier.verify(tokens.mint("ES256"));
      for (int i = 0; i < 5; i++) {
        JWSHeader header = TestTokens.header(JWSAlgorithm.ES256, "made-up-" + i, "at+jwt");
        String forged = tokens.mint("ES256", header, TestTokens.validClaims().build());
        TokendVerifierTest.assertRefused(Reason.REASON_UNKNOWN_KEY, verifier, forged);
      }
      assertEquals(1, fetches.get(), "no fetch within the minimum refetch interval");
    }
  }

  @Test
  void refreshesPeriodicallySoAWithdrawnKeyGoes() throws Exception {
    served.set(tokens.publicKeys());
    try (FetchingKeySource keys =
            FetchingKeySource.fromUrl(jwksUrl(), Duration.ofMillis(200), Duration.ofHours(1));
        TokendVerifier verifier = TokendVerifier.builder().issuer(ISSUER).audience(AUDIENCE)
            .keySource(keys).build()) {
      verifier.verify(tokens.mint("RS256"));
      served.set(new JWKSet(tokens.publicKeys().getKeyByKeyId("ES256"))); // RS256 withdrawn
      long deadline = System.nanoTime() + 5_000_000_000L;
      while (keys.keys().get("RS256") != null) {
        assertTrue(System.nanoTime() < deadline, "the periodic refresh did not drop the key");
        Thread.sleep(20);
      }
      TokendVerifierTest.assertRefused(Reason.REASON_UNKNOWN_KEY, verifier, tokens.mint("RS256"));
    }
  }

  @Test
  void aJwksUrlMustBeHttpsOrLoopback() throws Exception {
    assertThrows(IllegalArgumentException.class,
        () -> FetchingKeySource.fromUrl(new URL("http://tokend.example/.well-known/jwks.json")));
    assertThrows(IllegalArgumentException.class,
        () -> FetchingKeySource.fromUrl(new URL("file:///etc/jwks.json")));
    FetchingKeySource.fromUrl(new URL("https://tokend.example/.well-known/jwks.json")).close();
    FetchingKeySource.fromUrl(new URL("http://[::1]:8080/.well-known/jwks.json")).close();
    FetchingKeySource.fromUrl(new URL("http://localhost:8080/.well-known/jwks.json")).close();
  }

  @Test
  void aNimbusKeySourceStillWorks() throws Exception {
    served.set(new JWKSet(tokens.publicKeys().getKeyByKeyId("ES256")));
    try (TokendVerifier verifier = TokendVerifier.builder().issuer(ISSUER).audience(AUDIENCE)
        .keySource(TokendJwks.fromUrl(jwksUrl())).build()) {
      verifier.verify(tokens.mint("ES256"));
      served.set(tokens.publicKeys());
      verifier.verify(tokens.mint("EdDSA")); // Nimbus refreshes on the unknown kid
      assertEquals(2, fetches.get());
    }
  }

  @Test
  void saysKeysAreUnavailableWhenTheEndpointIsDown() throws Exception {
    server.stop(0);
    // The first keys are fetched by build(): a verifier never starts without them.
    assertThrows(KeySetUnavailableException.class, this::verifier);
    served.set(tokens.publicKeys());
    try (FetchingKeySource keys = FetchingKeySource.fromUrl(jwksUrl(), null, Duration.ZERO)) {
      assertThrows(KeySetUnavailableException.class, keys::keys);
    }
  }
}
