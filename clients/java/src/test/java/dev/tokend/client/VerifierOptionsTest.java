package dev.tokend.client;

import static dev.tokend.client.TestTokens.AUDIENCE;
import static dev.tokend.client.TestTokens.ISSUER;
import static dev.tokend.client.TestTokens.validClaims;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.nimbusds.jwt.JWTClaimsSet;
import dev.tokend.v1.Reason;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.Date;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The options of the contract that the verifier lacked before: clock, leeway 0, max lifetime,
 * no audience, required claims and typ. */
class VerifierOptionsTest {

  private static final Instant T = Instant.ofEpochSecond(1_767_225_600L);
  private static TestTokens tokens;
  private static JwkSet keys;

  @BeforeAll
  static void setUp() throws Exception {
    tokens = TestTokens.shared();
    keys = JwkSet.parse(tokens.publicKeys().toString());
  }

  private static TokendVerifier.Builder at(Instant now) {
    return TokendVerifier.builder().issuer(ISSUER).audience(AUDIENCE).jwks(keys)
        .clock(Clock.fixed(now, ZoneOffset.UTC));
  }

  private static JWTClaimsSet.Builder issuedAt(Instant iat, long lifetime) {
    return validClaims().issueTime(Date.from(iat)).expirationTime(Date.from(iat.plusSeconds(lifetime)));
  }

  private static void refused(Reason reason, TokendVerifier verifier, String token) {
    TokendVerifierTest.assertRefused(reason, verifier, token);
  }

  @Test
  void theInjectedClockDecidesExpiry() throws Exception {
    String token = tokens.mint("ES256", issuedAt(T, 300).build());
    at(T.plusSeconds(329)).build().verify(token);
    refused(Reason.REASON_EXPIRED, at(T.plusSeconds(330)).build(), token);
  }

  @Test
  void leewayZeroIsExact() throws Exception {
    String token = tokens.mint("ES256", issuedAt(T, 300).build());
    TokendVerifier strict = at(T.plusSeconds(299)).leeway(Duration.ZERO).build();
    strict.verify(token);
    refused(Reason.REASON_EXPIRED, at(T.plusSeconds(300)).leeway(Duration.ZERO).build(), token);
    refused(Reason.REASON_ISSUED_IN_FUTURE, at(T.minusSeconds(1)).leeway(Duration.ZERO).build(),
        token);
  }

  @Test
  void maxLifetimeBoundsExpMinusIat() throws Exception {
    TokendVerifier verifier = at(T).maxLifetime(Duration.ofSeconds(600)).build();
    verifier.verify(tokens.mint("ES256", issuedAt(T, 600).build()));
    refused(Reason.REASON_LIFETIME_TOO_LONG, verifier,
        tokens.mint("ES256", issuedAt(T, 601).build()));
    TokendVerifier noIat = at(T).maxLifetime(Duration.ofSeconds(600))
        .requiredClaims(List.of("exp", "iss", "sub", "aud", "jti")).build();
    refused(Reason.REASON_MISSING_CLAIM, noIat,
        tokens.mint("ES256", issuedAt(T, 60).issueTime(null).build()));
  }

  @Test
  void withoutAnAudienceATokenCarryingAudIsRefused() throws Exception {
    TokendVerifier verifier = at(T).audiences(null)
        .requiredClaims(List.of("exp", "iat", "iss", "sub", "jti")).build();
    refused(Reason.REASON_WRONG_AUDIENCE, verifier, tokens.mint("ES256", issuedAt(T, 60).build()));
    assertEquals("alice",
        verifier.verify(tokens.mint("ES256", issuedAt(T, 60).audience((String) null).build()))
            .getSubject());
  }

  @Test
  void requiredClaimsAreConfigurable() throws Exception {
    String token = tokens.mint("ES256", issuedAt(T, 60).build());
    refused(Reason.REASON_MISSING_CLAIM,
        at(T).requiredClaims(List.of("exp", "client_id", "cnf")).build(), token);
    at(T).requiredClaims(List.of()).build().verify(token);
  }

  @Test
  void requiredTypIsConfigurable() throws Exception {
    String token = tokens.mint("ES256", issuedAt(T, 60).build());
    refused(Reason.REASON_WRONG_TYPE, at(T).requiredTyp("dpop+jwt").build(), token);
    at(T).requiredTyp("application/AT+JWT").build().verify(token);
  }

  @Test
  void aHugeTokenIsTooLargeBeforeAnyDecoding() {
    TokendVerifier verifier = at(T).maxTokenBytes(100).build();
    refused(Reason.REASON_TOO_LARGE, verifier, "a".repeat(101));
    assertThrows(IllegalArgumentException.class, () -> at(T).maxTokenBytes(64 * 1024 + 1));
  }
}
