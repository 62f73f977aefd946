package dev.tokend.client;

import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jwt.JWTClaimsSet;
import dev.tokend.v1.Reason;
import java.io.Closeable;
import java.io.IOException;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.net.URL;
import java.text.ParseException;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * Verifies tokend access tokens in-process, with no call per token, under the same contract as
 * the Python client's LocalVerifier and tokend's own Verify RPC (docs/verifier-contract.md;
 * RFC 9068, RFC 7519, RFC 8725).
 *
 * <p>Checks, in order: size; the signature layer ({@link Jws}: canonical compact JWS, strict
 * JSON header, no embedded keys or crit, algorithm bound to the key, exact signature
 * lengths); header {@code typ} (default {@code at+jwt}, any case, "application/" implied);
 * the claims are a strict JSON object; the required claims are present; exp/nbf/iat are JSON
 * numbers; {@code iss} equals the issuer exactly; exp, nbf and iat hold within the leeway and
 * exp - iat within the max lifetime; {@code aud} names an expected audience (or is absent when
 * none is expected); {@code sub} and {@code jti} are non-empty strings; required scopes are
 * in {@code scope}; {@code act} is well formed and fits the {@link Delegation} option (RFC 8693
 * section 4.1); a certificate-bound token ({@code cnf}, RFC 8705 section 3) is presented with
 * its certificate ({@link VerifyOptions}); with a {@link LiveSource}, the token is not revoked.
 * Every refusal is an {@link InvalidTokenException} with a {@link Reason}.
 *
 * <pre>{@code
 * TokendVerifier verifier = TokendVerifier.builder()
 *     .issuer("https://tokend.example")
 *     .audience("orders")
 *     .keySource(liveSource)            // or .jwksUrl(new URL(".../.well-known/jwks.json"))
 *     .build();
 * JWTClaimsSet claims = verifier.verify(token, List.of("orders:read"));
 * }</pre>
 *
 * <p>Instances are thread-safe. {@link #close()} releases a key source it owns (one made by
 * {@link Builder#jwksUrl} or adapted from a Nimbus source).
 */
public final class TokendVerifier implements AutoCloseable {

  /** The algorithms tokend signs with; the default allowlist. */
  public static final Set<JWSAlgorithm> SUPPORTED_ALGORITHMS =
      Set.of(JWSAlgorithm.ES256, JWSAlgorithm.RS256, JWSAlgorithm.PS256, JWSAlgorithm.EdDSA);

  /** The default required claims (RFC 9068 section 2.2). */
  public static final List<String> DEFAULT_REQUIRED_CLAIMS =
      List.of("exp", "iat", "iss", "sub", "aud", "jti");

  /** Default clock-skew allowance for exp, nbf and iat. */
  public static final Duration DEFAULT_LEEWAY = Duration.ofSeconds(30);

  /** The largest leeway accepted: more would quietly extend every token's life. */
  public static final Duration MAX_LEEWAY = Duration.ofMinutes(5);

  /** Default size limit of a token, tokend's own default. */
  public static final int DEFAULT_MAX_TOKEN_BYTES = 8192;

  /** Rule A1: the most {@code act} objects a chain may hold (tokend's policy allows no more). */
  public static final int MAX_ACT_DEPTH = 8;

  /**
   * Whether delegated tokens (with {@code act}, obtained by tokend's Exchange) are accepted
   * (docs/verifier-contract.md section A, rule A2); a refusal is {@code REASON_DELEGATION}.
   */
  public enum Delegation {
    /** Direct and delegated tokens (the default). */
    ANY,
    /** Only delegated tokens: one without {@code act} is refused. */
    REQUIRED,
    /** Only direct tokens: one with {@code act} is refused. */
    REFUSED
  }

  private final String issuer;
  private final Set<String> audiences; // null: the token must carry no aud
  private final Set<String> algorithms;
  private final long leeway;
  private final BigDecimal maxLifetime; // seconds, or null
  private final String typ;
  private final int maxTokenBytes;
  private final List<String> requiredClaims;
  private final Clock clock;
  private final KeySource keys;
  private final boolean ownsKeys;
  private final Delegation delegation;

  private TokendVerifier(Builder builder) {
    issuer = builder.issuer;
    audiences = builder.audiences;
    algorithms = builder.algorithms;
    leeway = builder.leeway.toSeconds();
    maxLifetime = builder.maxLifetime == null ? null
        : BigDecimal.valueOf(builder.maxLifetime.getSeconds())
            .add(BigDecimal.valueOf(builder.maxLifetime.getNano(), 9));
    typ = normalizeTyp(builder.requiredTyp);
    maxTokenBytes = builder.maxTokenBytes;
    requiredClaims = builder.requiredClaims;
    clock = builder.clock;
    keys = builder.keys;
    ownsKeys = builder.ownsKeys;
    delegation = builder.delegation;
  }

  /**
   * Starts a verifier; {@code issuer} and a key source are required.
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
   * @throws KeySetUnavailableException when the keys cannot be obtained, or a {@link
   *     LiveSource} has lost tokend for too long under the fail-closed policy (no verdict)
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
   * @throws KeySetUnavailableException when no verdict is possible (see {@link #verify(String)})
   */
  public JWTClaimsSet verify(String token, Collection<String> requiredScopes)
      throws InvalidTokenException {
    return toClaimsSet(verifyClaims(token, requiredScopes));
  }

  /**
   * Like {@link #verify(String, Collection)}, for a token given as bytes (which must be ASCII).
   *
   * @param token a compact JWS access token
   * @param requiredScopes scope names that must all be in the token's {@code scope} claim
   * @return the verified claims
   * @throws InvalidTokenException when the token is not valid, with the reason
   */
  public JWTClaimsSet verify(byte[] token, Collection<String> requiredScopes)
      throws InvalidTokenException {
    Objects.requireNonNull(token, "token");
    if (token.length > maxTokenBytes) {
      throw invalid(Reason.REASON_TOO_LARGE, "token exceeds " + maxTokenBytes + " bytes");
    }
    return verify(Jws.asciiText(token), requiredScopes);
  }

  /**
   * Verifies a token with per-call options: required scopes, the presenter's certificate
   * (a token with {@code cnf} verifies only when presented with its certificate, never without
   * one: RFC 8705 section 3) and the delegation rule.
   *
   * @param token a compact JWS access token
   * @param options the per-call options
   * @return the verified claims
   * @throws InvalidTokenException when the token is not valid, with the reason
   * @throws KeySetUnavailableException when no verdict is possible (see {@link #verify(String)})
   */
  public JWTClaimsSet verify(String token, VerifyOptions options) throws InvalidTokenException {
    return toClaimsSet(verifyClaims(token, options));
  }

  /**
   * Like {@link #verify(String, VerifyOptions)}, for a token given as bytes (must be ASCII).
   *
   * @param token a compact JWS access token
   * @param options the per-call options
   * @return the verified claims
   * @throws InvalidTokenException when the token is not valid, with the reason
   */
  public JWTClaimsSet verify(byte[] token, VerifyOptions options) throws InvalidTokenException {
    Objects.requireNonNull(token, "token");
    Objects.requireNonNull(options, "options");
    if (token.length > maxTokenBytes) {
      throw invalid(Reason.REASON_TOO_LARGE, "token exceeds " + maxTokenBytes + " bytes");
    }
    return verify(Jws.asciiText(token), options);
  }

  /**
   * Verifies a token and returns its claims as parsed: {@code Map}, {@code List}, {@code
   * String}, {@code Long}/{@code BigInteger}/{@code Double}, {@code Boolean}, {@code null}.
   *
   * @param token a compact JWS access token
   * @param requiredScopes scope names that must all be in the token's {@code scope} claim
   * @return the verified claims (unmodifiable)
   * @throws InvalidTokenException when the token is not valid, with the reason
   */
  public Map<String, Object> verifyClaims(String token, Collection<String> requiredScopes)
      throws InvalidTokenException {
    return verifyClaims(token, VerifyOptions.defaults().requiredScopes(
        Objects.requireNonNull(requiredScopes, "requiredScopes")));
  }

  /**
   * Like {@link #verify(String, VerifyOptions)}, returning the claims as parsed (see {@link
   * #verifyClaims(String, Collection)}).
   *
   * @param token a compact JWS access token
   * @param options the per-call options
   * @return the verified claims (unmodifiable)
   * @throws InvalidTokenException when the token is not valid, with the reason
   */
  public Map<String, Object> verifyClaims(String token, VerifyOptions options)
      throws InvalidTokenException {
    Objects.requireNonNull(token, "token");
    Objects.requireNonNull(options, "options");
    Set<String> scopes = requiredScopes(options.scopes());
    Instant now = clock.instant();
    // Size first, before any decoding: bounds the work a hostile token can cause.
    if (token.length() > maxTokenBytes
        && token.codePointCount(0, token.length()) > maxTokenBytes) {
      throw invalid(Reason.REASON_TOO_LARGE, "token exceeds " + maxTokenBytes + " bytes");
    }
    Jws.Verified verified = verifySignature(token);
    checkTyp(verified.header());
    Map<String, Object> claims = claimsObject(verified.payload());
    checkClaims(claims, now, scopes);
    // Contract order: claim rules, then act (A1, A2), then cnf (B1-B5), then revocation.
    checkDelegation(claims, options.delegationOr(delegation));
    Binding.checkConfirmation(claims, options.presenter());
    // Last: only a token that is otherwise valid is worth looking up.
    if (keys instanceof LiveSource live && live.isRevoked(claims, now)) {
      throw invalid(Reason.REASON_REVOKED, "token is revoked");
    }
    return java.util.Collections.unmodifiableMap(claims);
  }

  /**
   * The actor chain of verified claims, the current actor (outermost {@code act}) first;
   * empty for a direct token (RFC 8693 section 4.1).
   *
   * @param claims claims a verifier returned ({@link #verifyClaims})
   * @return the actors' {@code sub}, outermost first
   * @throws IllegalArgumentException when {@code act} breaks rule A1 (a verifier refuses such
   *     a token with {@code REASON_MALFORMED})
   */
  public static List<String> actors(Map<String, ?> claims) {
    try {
      return actorChain(claims);
    } catch (InvalidTokenException e) {
      throw new IllegalArgumentException(e.getMessage());
    }
  }

  /**
   * The actor chain of verified claims (see {@link #actors(Map)}).
   *
   * @param claims claims {@link #verify(String)} returned
   * @return the actors' {@code sub}, outermost first
   */
  public static List<String> actors(JWTClaimsSet claims) {
    return actors(claims.getClaims());
  }

  /** Rule A1: act is an object with a non-empty string sub, nested alike, at most 8 deep. */
  private static List<String> actorChain(Map<String, ?> claims) throws InvalidTokenException {
    if (!claims.containsKey("act")) {
      return List.of(); // a direct token: the common case allocates nothing
    }
    List<String> chain = new java.util.ArrayList<>();
    Object act = claims.get("act");
    while (true) {
      // RFC 8693 section 4.1: act is a JSON object naming the actor by sub.
      if (!(act instanceof Map<?, ?> object)) {
        throw invalid(Reason.REASON_MALFORMED, "claim act is not a JSON object");
      }
      if (!(object.get("sub") instanceof String sub) || sub.isEmpty()) {
        throw invalid(Reason.REASON_MALFORMED, "an act object lacks a non-empty string sub");
      }
      chain.add(sub);
      if (chain.size() > MAX_ACT_DEPTH) {
        throw invalid(Reason.REASON_MALFORMED, "claim act is nested deeper than " + MAX_ACT_DEPTH);
      }
      if (!object.containsKey("act")) {
        return List.copyOf(chain);
      }
      act = object.get("act");
    }
  }

  /** Rules A1 (act shape, MALFORMED) then A2 (the delegation option, DELEGATION). */
  private static void checkDelegation(Map<String, Object> claims, Delegation rule)
      throws InvalidTokenException {
    boolean delegated = !actorChain(claims).isEmpty();
    if (rule == Delegation.REQUIRED && !delegated) {
      throw invalid(Reason.REASON_DELEGATION, "only delegated tokens (with act) are accepted");
    }
    if (rule == Delegation.REFUSED && delegated) {
      throw invalid(Reason.REASON_DELEGATION, "delegated tokens (with act) are refused here");
    }
  }

  /** Closes the key source when this verifier made it (from a URL or a Nimbus source). */
  @Override
  public void close() throws IOException {
    if (!ownsKeys) {
      return;
    }
    if (keys instanceof Closeable closeable) {
      closeable.close();
    } else if (keys instanceof AutoCloseable closeable) {
      try {
        closeable.close();
      } catch (Exception e) {
        throw new IOException(e);
      }
    }
  }

  private Jws.Verified verifySignature(String token) throws InvalidTokenException {
    JwkSet current = keys.keys();
    try {
      return Jws.verify(token, current, algorithms);
    } catch (InvalidTokenException e) {
      // Only an unknown kid can be cured by newer keys; the source rate-limits the refetch.
      if (e.reason() != Reason.REASON_UNKNOWN_KEY) {
        throw e;
      }
      JwkSet newer = keys.refetchForUnknownKey(current);
      if (newer == null) {
        throw e;
      }
      return Jws.verify(token, newer, algorithms);
    }
  }

  private void checkTyp(Map<String, Object> header) throws InvalidTokenException {
    // RFC 9068 section 4 / RFC 8725 section 3.11: explicit typing keeps other JWTs out.
    if (!(header.get("typ") instanceof String value) || !normalizeTyp(value).equals(typ)) {
      throw invalid(Reason.REASON_WRONG_TYPE, "header typ is not " + typ);
    }
  }

  /** RFC 7515 section 4.1.9: case-insensitive, and "application/" implied without a "/". */
  private static String normalizeTyp(String value) {
    String lower = value.toLowerCase(Locale.ROOT);
    return lower.indexOf('/') >= 0 ? lower : "application/" + lower;
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> claimsObject(byte[] payload) throws InvalidTokenException {
    Object claims;
    try {
      claims = StrictJson.parse(payload);
    } catch (StrictJson.JsonException e) {
      throw invalid(Reason.REASON_MALFORMED, "claims are not strict JSON: " + e.getMessage());
    }
    // RFC 7519 section 7.2 step 10: the payload of a JWT is a JSON object.
    if (!(claims instanceof Map)) {
      throw invalid(Reason.REASON_MALFORMED, "claims are not a JSON object");
    }
    return (Map<String, Object>) claims;
  }

  private void checkClaims(Map<String, Object> claims, Instant now, Set<String> scopes)
      throws InvalidTokenException {
    for (String name : requiredClaims) {
      if (!claims.containsKey(name)) {
        throw invalid(Reason.REASON_MISSING_CLAIM, "token lacks required claim " + name);
      }
    }
    for (String name : List.of("exp", "nbf", "iat")) {
      // RFC 7519 section 2: a NumericDate is a JSON number (not null, a string or a boolean).
      if (claims.containsKey(name) && !isNumber(claims.get(name))) {
        throw invalid(Reason.REASON_MALFORMED, "claim " + name + " is not a NumericDate");
      }
    }
    Object iss = claims.get("iss");
    if (claims.containsKey("iss") && !(iss instanceof String)) {
      throw invalid(Reason.REASON_MALFORMED, "claim iss is not a string"); // RFC 7519 4.1.1
    }
    // RFC 9068 section 4 step 3: iss must exactly match the expected issuer.
    if (!issuer.equals(iss)) {
      throw invalid(Reason.REASON_WRONG_ISSUER, "token names another issuer");
    }
    checkTimes(claims.get("exp"), claims.get("nbf"), claims.get("iat"), now);
    checkAudience(claims);
    // RFC 7519 sections 4.1.2 (sub: StringOrURI) and 4.1.7 (jti: case-sensitive string).
    for (String name : List.of("sub", "jti")) {
      if (claims.containsKey(name)
          && !(claims.get(name) instanceof String value && !value.isEmpty())) {
        throw invalid(Reason.REASON_MALFORMED, "claim " + name + " is not a non-empty string");
      }
    }
    checkScopes(claims, scopes);
  }

  private static boolean isNumber(Object value) {
    return value instanceof Long || value instanceof BigInteger || value instanceof Double;
  }

  private void checkTimes(Object exp, Object nbf, Object iat, Instant now)
      throws InvalidTokenException {
    if (allLongOrAbsent(exp, nbf, iat)) {
      checkTimesExactly((Long) exp, (Long) nbf, (Long) iat, now.getEpochSecond());
      return;
    }
    BigDecimal moment = BigDecimal.valueOf(now.getEpochSecond())
        .add(BigDecimal.valueOf(now.getNano(), 9));
    BigDecimal grace = BigDecimal.valueOf(leeway);
    // RFC 7519 section 4.1.4: the current time MUST be before exp (plus a small leeway).
    if (exp != null && moment.compareTo(decimal(exp).add(grace)) >= 0) {
      throw invalid(Reason.REASON_EXPIRED, "token has expired");
    }
    // RFC 7519 section 4.1.5: the current time MUST be at or after nbf (minus leeway).
    if (nbf != null && moment.add(grace).compareTo(decimal(nbf)) < 0) {
      throw invalid(Reason.REASON_NOT_YET_VALID, "token is not valid yet");
    }
    // RFC 7519 section 4.1.6: iat later than now means a bad clock or a forged token.
    if (iat != null && decimal(iat).compareTo(moment.add(grace)) > 0) {
      throw invalid(Reason.REASON_ISSUED_IN_FUTURE, "token was issued in the future");
    }
    if (maxLifetime != null) {
      checkLifetime(exp == null ? null : decimal(exp), iat == null ? null : decimal(iat));
    }
  }

  private static boolean allLongOrAbsent(Object... values) {
    for (Object value : values) {
      if (value != null && !(value instanceof Long)) {
        return false;
      }
    }
    return true;
  }

  /**
   * The same rules with whole-second claims: comparing them with the whole seconds of now
   * decides exactly as with the fractional now, as every other term is an integer.
   */
  private void checkTimesExactly(Long exp, Long nbf, Long iat, long now)
      throws InvalidTokenException {
    if (exp != null && BigInteger.valueOf(now).compareTo(
        BigInteger.valueOf(exp).add(BigInteger.valueOf(leeway))) >= 0) {
      throw invalid(Reason.REASON_EXPIRED, "token has expired");
    }
    if (nbf != null && now + leeway < nbf) {
      throw invalid(Reason.REASON_NOT_YET_VALID, "token is not valid yet");
    }
    if (iat != null && iat > now + leeway) {
      throw invalid(Reason.REASON_ISSUED_IN_FUTURE, "token was issued in the future");
    }
    if (maxLifetime != null) {
      checkLifetime(exp == null ? null : BigDecimal.valueOf(exp),
          iat == null ? null : BigDecimal.valueOf(iat));
    }
  }

  private void checkLifetime(BigDecimal exp, BigDecimal iat) throws InvalidTokenException {
    // Without both ends the lifetime is unbounded, which the limit exists to refuse.
    if (exp == null || iat == null) {
      throw invalid(Reason.REASON_MISSING_CLAIM,
          "max lifetime needs claim " + (exp == null ? "exp" : "iat"));
    }
    if (exp.subtract(iat).compareTo(maxLifetime) > 0) {
      throw invalid(Reason.REASON_LIFETIME_TOO_LONG, "token lifetime exceeds the maximum");
    }
  }

  private static BigDecimal decimal(Object number) {
    if (number instanceof Long value) {
      return BigDecimal.valueOf(value);
    }
    if (number instanceof BigInteger value) {
      return new BigDecimal(value);
    }
    return new BigDecimal((Double) number); // exact, like Python's int/float comparison
  }

  private void checkAudience(Map<String, Object> claims) throws InvalidTokenException {
    if (!claims.containsKey("aud")) {
      return;
    }
    Object aud = claims.get("aud");
    // RFC 7519 section 4.1.3: a string or an array of strings (we require a non-empty one).
    List<?> values = aud instanceof String one ? List.of(one) : aud instanceof List<?> l ? l : null;
    if (values == null || values.isEmpty() || !values.stream().allMatch(v -> v instanceof String)) {
      throw invalid(Reason.REASON_MALFORMED, "claim aud is not a string or array of strings");
    }
    // RFC 7519 section 4.1.3: a recipient that does not identify itself with aud MUST reject.
    if (audiences == null || values.stream().noneMatch(audiences::contains)) {
      throw invalid(Reason.REASON_WRONG_AUDIENCE, "token is for another audience");
    }
  }

  private static void checkScopes(Map<String, Object> claims, Set<String> required)
      throws InvalidTokenException {
    Object scope = claims.get("scope");
    // RFC 9068 section 2.2.3 / RFC 8693 section 4.2: scope is one space-separated string.
    if (claims.containsKey("scope") && !(scope instanceof String)) {
      throw invalid(Reason.REASON_MALFORMED, "claim scope is not a string");
    }
    if (required.isEmpty()) {
      return;
    }
    Set<String> granted = scope == null ? Set.of()
        : new HashSet<>(Arrays.asList(((String) scope).split(" ")));
    for (String name : required) {
      if (!granted.contains(name)) {
        throw invalid(Reason.REASON_MISSING_SCOPE, "token lacks scope " + name);
      }
    }
  }

  private static Set<String> requiredScopes(Collection<String> required) {
    Objects.requireNonNull(required, "requiredScopes");
    if (required.isEmpty()) {
      return Set.of();
    }
    Set<String> names = new LinkedHashSet<>();
    for (String name : required) {
      if (name == null || name.isEmpty()) {
        throw new IllegalArgumentException("requiredScopes must contain only non-empty strings");
      }
      names.add(name);
    }
    return names;
  }

  private static JWTClaimsSet toClaimsSet(Map<String, Object> claims)
      throws InvalidTokenException {
    try {
      return JWTClaimsSet.parse(claims);
    } catch (ParseException | RuntimeException e) {
      throw invalid(Reason.REASON_MALFORMED, "claims cannot be represented: " + e.getMessage());
    }
  }

  private static InvalidTokenException invalid(Reason reason, String message) {
    return new InvalidTokenException(reason, message, null);
  }

  /** Configures a {@link TokendVerifier}. */
  public static final class Builder {

    private String issuer;
    private Set<String> audiences;
    private KeySource keys;
    private boolean ownsKeys;
    private Set<String> algorithms = Set.of("ES256", "RS256", "PS256", "EdDSA");
    private Duration leeway = DEFAULT_LEEWAY;
    private Duration maxLifetime;
    private String requiredTyp = "at+jwt";
    private int maxTokenBytes = DEFAULT_MAX_TOKEN_BYTES;
    private List<String> requiredClaims = DEFAULT_REQUIRED_CLAIMS;
    private Clock clock = Clock.systemUTC();
    private Delegation delegation = Delegation.ANY;

    private Builder() {}

    /**
     * Whether delegated tokens ({@code act}, RFC 8693 section 4.1) are accepted (default ANY);
     * {@link VerifyOptions#delegation} overrides it per call.
     *
     * @param delegation ANY, REQUIRED or REFUSED
     * @return this builder
     */
    public Builder delegation(Delegation delegation) {
      this.delegation = Objects.requireNonNull(delegation, "delegation");
      return this;
    }

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
     * section 4.1.3). Without any, a token that carries {@code aud} is refused.
     *
     * @param audiences one or more audience names
     * @return this builder
     */
    public Builder audience(String... audiences) {
      return audiences(Arrays.asList(audiences));
    }

    /**
     * The audiences this service answers to, or {@code null} for none (then a token that
     * carries {@code aud} is refused, RFC 7519 section 4.1.3).
     *
     * @param audiences one or more audience names, or {@code null}
     * @return this builder
     */
    public Builder audiences(Collection<String> audiences) {
      if (audiences == null) {
        this.audiences = null;
        return this;
      }
      if (audiences.isEmpty()) {
        throw new IllegalArgumentException("audience needs at least one value");
      }
      for (String audience : audiences) {
        requireText(audience, "audience");
      }
      this.audiences = Set.copyOf(audiences);
      return this;
    }

    /**
     * Takes the keys from a JWKS endpoint ({@link FetchingKeySource#fromUrl}); the verifier
     * closes that source.
     *
     * @param jwksUrl e.g. {@code https://tokend.example/.well-known/jwks.json}
     * @return this builder
     */
    public Builder jwksUrl(URL jwksUrl) {
      this.keys = FetchingKeySource.fromUrl(Objects.requireNonNull(jwksUrl, "jwksUrl"));
      this.ownsKeys = true;
      return this;
    }

    /**
     * Takes the keys from a key source: {@link LiveSource} (keys and revocations pushed by
     * tokend), {@link FetchingKeySource} or {@link KeySource#of}. The caller closes it.
     *
     * @param keys the key source
     * @return this builder
     */
    public Builder keySource(KeySource keys) {
      this.keys = Objects.requireNonNull(keys, "keys");
      this.ownsKeys = false;
      return this;
    }

    /**
     * Takes the keys from a Nimbus key source, e.g. one of {@link TokendJwks}; its keys are
     * read under this client's JWK policy. The verifier closes it.
     *
     * @param keys the key source
     * @return this builder
     */
    public Builder keySource(JWKSource<SecurityContext> keys) {
      this.keys = new NimbusKeySource(Objects.requireNonNull(keys, "keys"));
      this.ownsKeys = true;
      return this;
    }

    /**
     * A fixed key set.
     *
     * @param keys the keys
     * @return this builder
     */
    public Builder jwks(JwkSet keys) {
      return keySource(KeySource.of(keys));
    }

    /**
     * Narrows the algorithm allowlist (default: ES256, RS256, PS256, EdDSA).
     *
     * @param algorithms a non-empty subset of {@link Jws#SUPPORTED_ALGORITHMS}
     * @return this builder
     */
    public Builder algorithms(JWSAlgorithm... algorithms) {
      return allowedAlgorithms(Arrays.stream(algorithms).map(JWSAlgorithm::getName).toList());
    }

    /**
     * The algorithm allowlist by name.
     *
     * @param algorithms a non-empty subset of {@link Jws#SUPPORTED_ALGORITHMS}
     * @return this builder
     */
    public Builder allowedAlgorithms(Collection<String> algorithms) {
      Set<String> chosen = Set.copyOf(algorithms);
      if (chosen.isEmpty() || !Jws.SUPPORTED_ALGORITHMS.containsAll(chosen)) {
        throw new IllegalArgumentException(
            "algorithms must be a non-empty subset of " + Jws.SUPPORTED_ALGORITHMS);
      }
      this.algorithms = chosen;
      return this;
    }

    /**
     * Clock-skew allowance for exp, nbf and iat (default 30 s), whole seconds from 0 to 5 min.
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
     * The longest accepted {@code exp - iat}; then both claims are required. Default: none.
     *
     * @param maxLifetime a positive duration, or {@code null} for no limit
     * @return this builder
     */
    public Builder maxLifetime(Duration maxLifetime) {
      if (maxLifetime != null && (maxLifetime.isNegative() || maxLifetime.isZero())) {
        throw new IllegalArgumentException("maxLifetime must be positive");
      }
      this.maxLifetime = maxLifetime;
      return this;
    }

    /**
     * The size limit of a token (default 8192 bytes).
     *
     * @param maxTokenBytes from 1 to {@link Jws#MAX_COMPACT_BYTES}
     * @return this builder
     */
    public Builder maxTokenBytes(int maxTokenBytes) {
      if (maxTokenBytes <= 0 || maxTokenBytes > Jws.MAX_COMPACT_BYTES) {
        throw new IllegalArgumentException(
            "maxTokenBytes must be between 1 and " + Jws.MAX_COMPACT_BYTES);
      }
      this.maxTokenBytes = maxTokenBytes;
      return this;
    }

    /**
     * The claims every token must carry (default {@link #DEFAULT_REQUIRED_CLAIMS}).
     *
     * @param names claim names (may be empty)
     * @return this builder
     */
    public Builder requiredClaims(Collection<String> names) {
      for (String name : names) {
        requireText(name, "requiredClaims");
      }
      this.requiredClaims = List.copyOf(names);
      return this;
    }

    /**
     * The header {@code typ} tokens must carry (default {@code at+jwt}, RFC 9068 section 4).
     *
     * @param typ a media type; case-insensitive, "application/" implied
     * @return this builder
     */
    public Builder requiredTyp(String typ) {
      this.requiredTyp = requireText(typ, "requiredTyp");
      return this;
    }

    /**
     * The clock that says what time it is (default: the system UTC clock).
     *
     * @param clock e.g. {@code Clock.fixed(...)} in tests
     * @return this builder
     */
    public Builder clock(Clock clock) {
      this.clock = Objects.requireNonNull(clock, "clock");
      return this;
    }

    /**
     * Builds the verifier and obtains the first keys, so that a verifier never starts without
     * them (a {@link LiveSource} also waits for the revocations in force).
     *
     * @return the verifier
     * @throws IllegalStateException when the issuer or the key source is missing
     * @throws KeySetUnavailableException when the first keys cannot be obtained
     */
    public TokendVerifier build() {
      if (issuer == null || keys == null) {
        throw new IllegalStateException("issuer and a key source are required");
      }
      TokendVerifier verifier = new TokendVerifier(this);
      try {
        keys.keys();
      } catch (RuntimeException e) {
        try {
          verifier.close();
        } catch (IOException closing) {
          e.addSuppressed(closing);
        }
        throw e;
      }
      return verifier;
    }

    private static String requireText(String value, String name) {
      if (value == null || value.isEmpty()) {
        throw new IllegalArgumentException(name + " must be a non-empty string");
      }
      return value;
    }
  }
}
