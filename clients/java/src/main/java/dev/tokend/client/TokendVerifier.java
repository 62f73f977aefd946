package dev.tokend.client;

import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JOSEObjectType;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.KeySourceException;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.proc.BadJOSEException;
import com.nimbusds.jose.proc.BadJWSException;
import com.nimbusds.jose.proc.DefaultJOSEObjectTypeVerifier;
import com.nimbusds.jose.proc.JOSEObjectTypeVerifier;
import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jwt.JWT;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.JWTParser;
import com.nimbusds.jwt.PlainJWT;
import com.nimbusds.jwt.SignedJWT;
import com.nimbusds.jwt.proc.BadJWTException;
import com.nimbusds.jwt.proc.DefaultJWTProcessor;
import dev.tokend.v1.Reason;
import java.io.Closeable;
import java.io.IOException;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.text.ParseException;
import java.time.Duration;
import java.util.Arrays;
import java.util.Collection;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * Verifies tokend access tokens in-process, with no call per token, as strictly as tokend's
 * own Verify RPC (RFC 9068, RFC 8725) except for revocation, which only tokend knows.
 *
 * <p>Checks, in order: size; a compact JWS ({@code alg: none} and JWE refused) with no
 * {@code jwk}, {@code jku}, {@code x5u}, {@code x5c} or {@code crit} header; header {@code
 * typ} is {@code at+jwt} or {@code application/at+jwt} (any case); the algorithm is in the
 * allowlist (ES256, RS256, PS256, EdDSA; never HMAC), a published key has the {@code kid},
 * and the algorithm is the one that key declares; the signature; exp, iat, iss, sub, aud and
 * jti are present; {@code iss} equals the issuer exactly; {@code aud} contains an expected
 * audience; {@code exp}, {@code nbf} and {@code iat} hold within the leeway; required
 * scopes are in {@code scope}. See the README for the reason each refusal carries.
 *
 * <pre>{@code
 * TokendVerifier verifier = TokendVerifier.builder()
 *     .issuer("https://tokend.example")
 *     .audience("orders")
 *     .jwksUrl(new URL("https://tokend.example/.well-known/jwks.json"))
 *     .build();
 * JWTClaimsSet claims = verifier.verify(token, List.of("orders:read"));
 * }</pre>
 *
 * <p>Instances are thread-safe. {@link #close()} releases the key source.
 */
public final class TokendVerifier implements AutoCloseable {

  /** The algorithms tokend signs with; the default allowlist. */
  public static final Set<JWSAlgorithm> SUPPORTED_ALGORITHMS =
      Set.of(JWSAlgorithm.ES256, JWSAlgorithm.RS256, JWSAlgorithm.PS256, JWSAlgorithm.EdDSA);

  /** Default clock-skew allowance for exp, nbf and iat. */
  public static final Duration DEFAULT_LEEWAY = Duration.ofSeconds(30);

  /** The largest leeway accepted: more would quietly extend every token's life. */
  public static final Duration MAX_LEEWAY = Duration.ofMinutes(5);

  /** Default size limit of a token, tokend's own default. */
  public static final int DEFAULT_MAX_TOKEN_BYTES = 8192;

  private static final JOSEObjectTypeVerifier<SecurityContext> ACCESS_TOKEN_TYPE =
      accessTokenType();

  private final DefaultJWTProcessor<SecurityContext> processor = new DefaultJWTProcessor<>();
  private final JWKSource<SecurityContext> keys;
  private final int maxTokenBytes;

  private TokendVerifier(Builder builder) {
    keys = builder.keys;
    maxTokenBytes = builder.maxTokenBytes;
    processor.setJWSTypeVerifier(ACCESS_TOKEN_TYPE);
    processor.setJWSKeySelector(new AlgorithmBoundKeySelector(builder.algorithms, keys));
    processor.setJWSVerifierFactory(new EdDsa.VerifierFactory());
    processor.setJWTClaimsSetVerifier(
        new AccessTokenClaimsVerifier(builder.issuer, builder.audiences, builder.leeway));
  }

  /**
   * Starts a verifier; {@code issuer}, {@code audience} and a key source are required.
   *
   * @return a new builder
   */
  public static Builder builder() {
    return new Builder();
  }

  /**
   * Verifies a token and returns its claims.
   *
   * @param token a compact JWS access token
   * @return the verified claims
   * @throws InvalidTokenException when the token is not valid, with the reason
   * @throws KeySetUnavailableException when the keys cannot be fetched (no verdict)
   */
  public JWTClaimsSet verify(String token) throws InvalidTokenException {
    return verify(token, List.of());
  }

  /**
   * Verifies a token and that it grants every one of {@code requiredScopes}.
   *
   * @param token a compact JWS access token
   * @param requiredScopes scope names that must all be in the token's {@code scope} claim
   * @return the verified claims
   * @throws InvalidTokenException when the token is not valid, with the reason
   * @throws KeySetUnavailableException when the keys cannot be fetched (no verdict)
   */
  public JWTClaimsSet verify(String token, Collection<String> requiredScopes)
      throws InvalidTokenException {
    Objects.requireNonNull(requiredScopes, "requiredScopes");
    JWTClaimsSet claims = process(parse(token));
    checkScopes(claims, requiredScopes);
    return claims;
  }

  /** Closes the key source when it holds resources (the remote ones run a refresh thread). */
  @Override
  public void close() throws IOException {
    if (keys instanceof Closeable closeable) {
      closeable.close();
    }
  }

  private SignedJWT parse(String token) throws InvalidTokenException {
    Objects.requireNonNull(token, "token");
    // Size first, before any decoding: bounds the work a hostile token can cause. UTF-8 is
    // never shorter than the char count, so that cheap test spares encoding a huge string.
    if (token.length() > maxTokenBytes
        || token.getBytes(StandardCharsets.UTF_8).length > maxTokenBytes) {
      throw invalid(Reason.REASON_TOO_LARGE, "token exceeds " + maxTokenBytes + " bytes", null);
    }
    JWT jwt;
    try {
      jwt = JWTParser.parse(token);
    } catch (ParseException e) {
      throw invalid(Reason.REASON_MALFORMED, "not a compact JWS: " + e.getMessage(), null);
    }
    if (jwt instanceof SignedJWT signed) {
      checkHeader(signed.getHeader());
      return signed;
    }
    if (jwt instanceof PlainJWT) {
      throw invalid(Reason.REASON_DISALLOWED_ALGORITHM, "unsecured JWT (alg none)", null);
    }
    throw invalid(Reason.REASON_MALFORMED, "encrypted JWTs are not access tokens", null);
  }

  /**
   * Refuses what tokend never sends and the server's verifier refuses too: keys or key
   * locations in the header (RFC 8725 section 3.10: the verifier picks the key, never the
   * token) and critical extensions, none of which are implemented (RFC 7515 section 4.1.11).
   */
  private static void checkHeader(JWSHeader header) throws InvalidTokenException {
    if (header.getJWK() != null || header.getJWKURL() != null
        || header.getX509CertURL() != null || header.getX509CertChain() != null) {
      throw invalid(Reason.REASON_MALFORMED, "header jwk, jku, x5u and x5c are not accepted", null);
    }
    if (header.getCriticalParams() != null) {
      throw invalid(Reason.REASON_MALFORMED, "header crit names unsupported extensions", null);
    }
  }

  private JWTClaimsSet process(SignedJWT jwt) throws InvalidTokenException {
    try {
      return processor.process(jwt, null);
    } catch (Rejection e) {
      throw e.toInvalidToken();
    } catch (AlgorithmBoundKeySelector.NoKey e) {
      throw e.toInvalidToken();
    } catch (BadJWSException e) {
      throw invalid(Reason.REASON_BAD_SIGNATURE, e.getMessage(), e);
    } catch (BadJWTException e) {
      // Claims that are not a JSON object, or a registered claim of the wrong type.
      throw invalid(Reason.REASON_MALFORMED, e.getMessage(), e);
    } catch (BadJOSEException e) {
      // Not reached with this configuration (the key selector explains a missing key).
      throw invalid(Reason.REASON_MALFORMED, e.getMessage(), e);
    } catch (KeySourceException e) {
      throw new KeySetUnavailableException("cannot obtain tokend's keys: " + e.getMessage(), e);
    } catch (JOSEException e) {
      throw invalid(Reason.REASON_BAD_SIGNATURE, e.getMessage(), e);
    }
  }

  private static void checkScopes(JWTClaimsSet claims, Collection<String> required)
      throws InvalidTokenException {
    String scope;
    try {
      scope = claims.getStringClaim("scope");
    } catch (ParseException e) {
      throw invalid(Reason.REASON_MALFORMED, "claim scope is not a string", null);
    }
    // RFC 9068 section 2.2.3: one space-separated string.
    Set<String> granted = scope == null ? Set.of() : Set.copyOf(Arrays.asList(scope.split(" ")));
    for (String name : required) {
      if (!granted.contains(name)) {
        throw invalid(Reason.REASON_MISSING_SCOPE, "token lacks scope " + name, null);
      }
    }
  }

  /** RFC 9068 section 4 and RFC 8725 section 3.11: explicit typing keeps other JWTs out. */
  private static JOSEObjectTypeVerifier<SecurityContext> accessTokenType() {
    DefaultJOSEObjectTypeVerifier<SecurityContext> types =
        new DefaultJOSEObjectTypeVerifier<>(
            new JOSEObjectType("at+jwt"), new JOSEObjectType("application/at+jwt"));
    return (type, context) -> {
      try {
        types.verify(type, context);
      } catch (BadJOSEException e) {
        throw new Rejection(Reason.REASON_WRONG_TYPE, e.getMessage());
      }
    };
  }

  private static InvalidTokenException invalid(Reason reason, String message, Throwable cause) {
    return new InvalidTokenException(reason, message, cause);
  }

  /** Configures a {@link TokendVerifier}. */
  public static final class Builder {

    private String issuer;
    private Set<String> audiences;
    private JWKSource<SecurityContext> keys;
    private Set<JWSAlgorithm> algorithms = SUPPORTED_ALGORITHMS;
    private Duration leeway = DEFAULT_LEEWAY;
    private int maxTokenBytes = DEFAULT_MAX_TOKEN_BYTES;

    private Builder() {}

    /**
     * The issuer tokens must name exactly (tokend's {@code tokens.issuer}).
     *
     * @param issuer e.g. {@code https://tokend.example}
     * @return this builder
     */
    public Builder issuer(String issuer) {
      this.issuer = requireText(issuer, "issuer");
      return this;
    }

    /**
     * The audiences this service answers to; a token must name at least one (RFC 7519
     * section 4.1.3).
     *
     * @param audiences one or more audience names
     * @return this builder
     */
    public Builder audience(String... audiences) {
      if (audiences.length == 0) {
        throw new IllegalArgumentException("audience needs at least one value");
      }
      for (String audience : audiences) {
        requireText(audience, "audience");
      }
      this.audiences = Set.of(audiences);
      return this;
    }

    /**
     * Takes the keys from a JWKS endpoint ({@link TokendJwks#fromUrl}).
     *
     * @param jwksUrl e.g. {@code https://tokend.example/.well-known/jwks.json}
     * @return this builder
     */
    public Builder jwksUrl(URL jwksUrl) {
      return keySource(TokendJwks.fromUrl(Objects.requireNonNull(jwksUrl, "jwksUrl")));
    }

    /**
     * Takes the keys from any Nimbus key source, e.g. one of {@link TokendJwks}.
     *
     * @param keys the key source
     * @return this builder
     */
    public Builder keySource(JWKSource<SecurityContext> keys) {
      this.keys = Objects.requireNonNull(keys, "keys");
      return this;
    }

    /**
     * Narrows the algorithm allowlist (default: all of {@link #SUPPORTED_ALGORITHMS}).
     *
     * @param algorithms a non-empty subset of {@link #SUPPORTED_ALGORITHMS}
     * @return this builder
     */
    public Builder algorithms(JWSAlgorithm... algorithms) {
      Set<JWSAlgorithm> chosen = Set.of(algorithms);
      if (chosen.isEmpty() || !SUPPORTED_ALGORITHMS.containsAll(chosen)) {
        throw new IllegalArgumentException(
            "algorithms must be a non-empty subset of " + SUPPORTED_ALGORITHMS);
      }
      this.algorithms = chosen;
      return this;
    }

    /**
     * Clock-skew allowance for exp, nbf and iat (default 30 s), whole seconds up to 5 min.
     *
     * @param leeway the allowance
     * @return this builder
     */
    public Builder leeway(Duration leeway) {
      if (leeway.isNegative() || leeway.compareTo(MAX_LEEWAY) > 0 || leeway.getNano() != 0) {
        throw new IllegalArgumentException("leeway must be whole seconds from 0 to " + MAX_LEEWAY);
      }
      this.leeway = leeway;
      return this;
    }

    /**
     * The size limit of a token (default 8192 bytes).
     *
     * @param maxTokenBytes a positive number of bytes
     * @return this builder
     */
    public Builder maxTokenBytes(int maxTokenBytes) {
      if (maxTokenBytes <= 0) {
        throw new IllegalArgumentException("maxTokenBytes must be positive");
      }
      this.maxTokenBytes = maxTokenBytes;
      return this;
    }

    /**
     * Builds the verifier.
     *
     * @return the verifier
     * @throws IllegalStateException when issuer, audience or the key source is missing
     */
    public TokendVerifier build() {
      if (issuer == null || audiences == null || keys == null) {
        throw new IllegalStateException("issuer, audience and a key source are required");
      }
      return new TokendVerifier(this);
    }

    private static String requireText(String value, String name) {
      if (value == null || value.isEmpty()) {
        throw new IllegalArgumentException(name + " must be a non-empty string");
      }
      return value;
    }
  }
}
