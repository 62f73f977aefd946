package dev.tokend.client;

import static dev.tokend.client.TestTokens.AUDIENCE;
import static dev.tokend.client.TestTokens.ISSUER;
import static dev.tokend.client.TestTokens.header;
import static dev.tokend.client.TestTokens.validClaims;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JOSEObjectType;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.crypto.MACSigner;
import com.nimbusds.jose.crypto.RSASSASigner;
import com.nimbusds.jose.crypto.opts.AllowWeakRSAKey;
import com.nimbusds.jose.jwk.Curve;
import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.RSAKey;
import com.nimbusds.jose.jwk.gen.RSAKeyGenerator;
import com.nimbusds.jose.jwk.source.ImmutableJWKSet;
import com.nimbusds.jose.util.Base64URL;
import com.nimbusds.jose.util.JSONObjectUtils;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.PlainJWT;
import dev.tokend.v1.Reason;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.time.Duration;
import java.time.Instant;
import java.util.Date;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class TokendVerifierTest {

  private static TestTokens tokens;
  private static TokendVerifier verifier;

  @BeforeAll
  static void setUp() throws JOSEException, GeneralSecurityException {
    tokens = TestTokens.shared();
    verifier = verifierFor(tokens.publicKeys());
  }

  static TokendVerifier verifierFor(JWKSet keys) {
    return TokendVerifier.builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keySource(new ImmutableJWKSet<>(keys))
        .build();
  }

  static void assertRefused(Reason reason, TokendVerifier verifier, String token) {
    InvalidTokenException e =
        assertThrows(InvalidTokenException.class, () -> verifier.verify(token));
    assertEquals(reason, e.reason(), e::getMessage);
    if (token.length() > 16) { // shorter ones are too likely to occur by chance
      assertFalse(e.getMessage().contains(token), "the message must not contain the token");
    }
  }

  static void assertRefused(Reason reason, String token) {
    assertRefused(reason, verifier, token);
  }

  static Date inSeconds(long seconds) {
    return Date.from(Instant.now().plusSeconds(seconds));
  }

  @ParameterizedTest
  @ValueSource(strings = {"ES256", "RS256", "PS256", "EdDSA"})
  void acceptsAValidTokenOfEachAlgorithm(String alg) throws Exception {
    JWTClaimsSet claims = verifier.verify(tokens.mint(alg));
    assertEquals("alice", claims.getSubject());
    assertEquals(TestTokens.CLIENT_ID, claims.getStringClaim("client_id"));
  }

  @Test
  void acceptsEd448() throws Exception {
    KeyPair pair = KeyPairGenerator.getInstance("Ed448").generateKeyPair();
    JWKSet keys = new JWKSet(TestTokens.edJwk("ed448", pair, Curve.Ed448, 57));
    String token = TestTokens.sign(new TestTokens.JdkEdDsaSigner(pair.getPrivate()),
        header(JWSAlgorithm.EdDSA, "ed448", "at+jwt"), validClaims().build());
    assertEquals("alice", verifierFor(keys).verify(token).getSubject());
  }

  @ParameterizedTest
  @ValueSource(strings = {"ES256", "RS256", "PS256", "EdDSA"})
  void refusesATamperedPayload(String alg) throws Exception {
    String[] parts = tokens.mint(alg).split("\\.");
    JWTClaimsSet forged = validClaims().subject("mallory").build();
    parts[1] = Base64URL.encode(forged.toString()).toString();
    assertRefused(Reason.REASON_BAD_SIGNATURE, String.join(".", parts));
  }

  @ParameterizedTest
  @ValueSource(strings = {"at+jwt", "application/at+jwt", "AT+JWT", "Application/At+Jwt"})
  void acceptsEverySpellingOfTheAccessTokenType(String typ) throws Exception {
    JWSHeader header = header(JWSAlgorithm.ES256, "ES256", typ);
    verifier.verify(tokens.mint("ES256", header, validClaims().build()));
  }

  @ParameterizedTest
  @ValueSource(strings = {"JWT", "application/jwt", "at+jwt; x", "dpop+jwt"})
  void refusesAnotherType(String typ) throws Exception {
    JWSHeader header = header(JWSAlgorithm.ES256, "ES256", typ);
    assertRefused(Reason.REASON_WRONG_TYPE, tokens.mint("ES256", header, validClaims().build()));
  }

  @Test
  void refusesAMissingType() throws Exception {
    JWSHeader header = header(JWSAlgorithm.ES256, "ES256", null);
    assertRefused(Reason.REASON_WRONG_TYPE, tokens.mint("ES256", header, validClaims().build()));
  }

  @Test
  void refusesAnotherAudience() throws Exception {
    String token = tokens.mint("ES256", validClaims().audience("billing").build());
    assertRefused(Reason.REASON_WRONG_AUDIENCE, token);
  }

  @Test
  void acceptsAnyOfSeveralExpectedAudiences() throws Exception {
    TokendVerifier either = TokendVerifier.builder().issuer(ISSUER).audience("x", "billing")
        .keySource(new ImmutableJWKSet<>(tokens.publicKeys())).build();
    either.verify(tokens.mint("ES256", validClaims().audience("billing").build()));
  }

  @ParameterizedTest
  @ValueSource(strings = {"https://evil.test", "https://tokend.test/", "https://TOKEND.test"})
  void requiresTheExactIssuer(String issuer) throws Exception {
    String token = tokens.mint("ES256", validClaims().issuer(issuer).build());
    assertRefused(Reason.REASON_WRONG_ISSUER, token);
  }

  @ParameterizedTest
  @ValueSource(strings = {"exp", "iat", "iss", "sub", "aud", "jti"})
  void requiresEveryRegisteredClaim(String name) throws Exception {
    String token = tokens.mint("ES256", validClaims().claim(name, null).build());
    assertRefused(Reason.REASON_MISSING_CLAIM, token);
  }

  @Test
  void refusesAlgNone() {
    String token = new PlainJWT(validClaims().build()).serialize();
    assertRefused(Reason.REASON_DISALLOWED_ALGORITHM, token);
  }

  @Test
  void refusesHs256KeyedWithThePublicKey() throws Exception {
    // The classic confusion: an HMAC "secret" anyone can read from the JWKS.
    RSAKey published = (RSAKey) tokens.publicKeys().getKeyByKeyId("RS256");
    MACSigner signer = new MACSigner(published.toRSAPublicKey().getEncoded());
    JWSHeader header = header(JWSAlgorithm.HS256, "RS256", "at+jwt");
    String token = TestTokens.sign(signer, header, validClaims().build());
    assertRefused(Reason.REASON_DISALLOWED_ALGORITHM, token);
  }

  @Test
  void refusesAnAlgorithmTheKeyIsNotBoundTo() throws Exception {
    // Genuinely signed by the PS256 key, but as RS256: same key type, other algorithm.
    JWSHeader header = header(JWSAlgorithm.RS256, "PS256", "at+jwt");
    assertRefused(Reason.REASON_DISALLOWED_ALGORITHM,
        tokens.mint("PS256", header, validClaims().build()));
  }

  @Test
  void refusesTokensOfRsaKeysUnder2048BitsAlone() throws Exception {
    RSAKey weak = new RSAKeyGenerator(1024, true).keyID("weak").algorithm(JWSAlgorithm.RS256)
        .generate();
    RSASSASigner signer =
        new RSASSASigner(weak.toPrivateKey(), Set.of(AllowWeakRSAKey.getInstance()));
    String token = TestTokens.sign(signer,
        header(JWSAlgorithm.RS256, "weak", "at+jwt"), validClaims().build());
    // The weak key is dropped from the set (RFC 7518 section 3.3): its tokens name an unknown
    // key, and the other keys of the set still verify.
    List<com.nimbusds.jose.jwk.JWK> keys = new java.util.ArrayList<>(tokens.publicKeys().getKeys());
    keys.add(weak.toPublicJWK());
    TokendVerifier mixed = verifierFor(new JWKSet(keys));
    assertRefused(Reason.REASON_UNKNOWN_KEY, mixed, token);
    mixed.verify(tokens.mint("ES256"));
  }

  @Test
  void refusesAnAllowedAlgorithmLeftOutOfTheAllowlist() throws Exception {
    TokendVerifier esOnly = TokendVerifier.builder().issuer(ISSUER).audience(AUDIENCE)
        .keySource(new ImmutableJWKSet<>(tokens.publicKeys()))
        .algorithms(JWSAlgorithm.ES256).build();
    assertRefused(Reason.REASON_DISALLOWED_ALGORITHM, esOnly, tokens.mint("RS256"));
    esOnly.verify(tokens.mint("ES256"));
  }

  @Test
  void refusesAnUnknownKey() throws Exception {
    JWSHeader header = header(JWSAlgorithm.ES256, "ES256-old", "at+jwt");
    assertRefused(Reason.REASON_UNKNOWN_KEY, tokens.mint("ES256", header, validClaims().build()));
  }

  @Test
  void refusesATokenWithoutKid() throws Exception {
    JWSHeader header = header(JWSAlgorithm.ES256, null, "at+jwt");
    assertRefused(Reason.REASON_UNKNOWN_KEY, tokens.mint("ES256", header, validClaims().build()));
  }

  @Test
  void refusesAKeyCarriedInTheHeader() throws Exception {
    JWSHeader header = new JWSHeader.Builder(header(JWSAlgorithm.ES256, "ES256", "at+jwt"))
        .jwk(tokens.publicKeys().getKeyByKeyId("ES256")).build();
    assertRefused(Reason.REASON_MALFORMED, tokens.mint("ES256", header, validClaims().build()));
  }

  @Test
  void refusesCriticalExtensions() throws Exception {
    JWSHeader header = new JWSHeader.Builder(JWSAlgorithm.ES256).keyID("ES256")
        .type(new JOSEObjectType("at+jwt")).customParam("exp-ext", 1)
        .criticalParams(Set.of("exp-ext")).build();
    assertRefused(Reason.REASON_MALFORMED, tokens.mint("ES256", header, validClaims().build()));
  }

  @Test
  void refusesAnExpiredToken() throws Exception {
    JWTClaimsSet claims =
        validClaims().issueTime(inSeconds(-400)).expirationTime(inSeconds(-100)).build();
    assertRefused(Reason.REASON_EXPIRED, tokens.mint("EdDSA", claims));
  }

  @Test
  void toleratesClockSkewWithinTheLeeway() throws Exception {
    JWTClaimsSet claims = validClaims().issueTime(inSeconds(20)).expirationTime(inSeconds(-20))
        .notBeforeTime(inSeconds(20)).build();
    verifier.verify(tokens.mint("ES256", claims));
  }

  @Test
  void refusesATokenNotYetValid() throws Exception {
    JWTClaimsSet claims = validClaims().notBeforeTime(inSeconds(120)).build();
    assertRefused(Reason.REASON_NOT_YET_VALID, tokens.mint("ES256", claims));
  }

  @Test
  void refusesATokenIssuedInTheFuture() throws Exception {
    JWTClaimsSet claims = validClaims().issueTime(inSeconds(120)).build();
    assertRefused(Reason.REASON_ISSUED_IN_FUTURE, tokens.mint("ES256", claims));
  }

  @Test
  void refusesATokenOverTheSizeLimit() throws Exception {
    String token = tokens.mint("ES256", validClaims().claim("pad", "x".repeat(9000)).build());
    assertRefused(Reason.REASON_TOO_LARGE, token);
  }

  @ParameterizedTest
  @ValueSource(strings = {"", "abc", "a.b.c", "e30.e30.", "!!.!!.!!"})
  void refusesMalformedTokens(String token) {
    assertRefused(Reason.REASON_MALFORMED, token);
  }

  @Test
  void refusesRegisteredClaimsOfTheWrongType() throws Exception {
    Map<String, Object> claims = new HashMap<>(validClaims().build().toJSONObject());
    claims.put("exp", "tomorrow");
    String token = tokens.signRaw("ES256", TestTokens.headerJson("ES256"),
        JSONObjectUtils.toJSONString(claims).getBytes(java.nio.charset.StandardCharsets.UTF_8));
    assertRefused(Reason.REASON_MALFORMED, token);
  }

  @Test
  void refusesAnEmptySubject() throws Exception {
    assertRefused(Reason.REASON_MALFORMED, tokens.mint("ES256", validClaims().subject("").build()));
  }

  @Test
  void checksRequiredScopes() throws Exception {
    String token = tokens.mint("ES256");
    verifier.verify(token, List.of("orders:read", "orders:write"));
    InvalidTokenException e = assertThrows(InvalidTokenException.class,
        () -> verifier.verify(token, List.of("orders:read", "orders:delete")));
    assertEquals(Reason.REASON_MISSING_SCOPE, e.reason());
  }

  @Test
  void builderRefusesUnsafeSettings() {
    TokendVerifier.Builder builder = TokendVerifier.builder();
    assertIllegal(() -> builder.algorithms(JWSAlgorithm.HS256));
    assertIllegal(() -> builder.algorithms(JWSAlgorithm.ES256, JWSAlgorithm.HS256));
    assertIllegal(() -> builder.allowedAlgorithms(List.of("none")));
    assertIllegal(() -> builder.maxLifetime(Duration.ZERO));
    assertIllegal(() -> builder.maxTokenBytes(0));
    assertIllegal(() -> builder.requiredTyp(""));
    assertIllegal(() -> builder.algorithms());
    assertIllegal(() -> builder.leeway(Duration.ofMinutes(10)));
    assertIllegal(() -> builder.leeway(Duration.ofSeconds(-1)));
    assertIllegal(() -> builder.audience());
    assertIllegal(() -> builder.issuer(""));
    assertThrows(IllegalStateException.class, () -> builder.issuer(ISSUER).build()); // no keys
  }

  private static void assertIllegal(Executable call) {
    assertThrows(IllegalArgumentException.class, call);
  }
}
