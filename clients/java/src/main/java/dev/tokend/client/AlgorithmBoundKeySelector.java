package dev.tokend.client;

import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.KeySourceException;
import com.nimbusds.jose.jwk.Curve;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.jwk.JWK;
import com.nimbusds.jose.jwk.JWKMatcher;
import com.nimbusds.jose.jwk.JWKSelector;
import com.nimbusds.jose.jwk.OctetKeyPair;
import com.nimbusds.jose.jwk.RSAKey;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.jwk.source.RateLimitReachedException;
import com.nimbusds.jose.proc.JWSVerificationKeySelector;
import com.nimbusds.jose.proc.SecurityContext;
import dev.tokend.v1.Reason;
import java.security.GeneralSecurityException;
import java.security.Key;
import java.security.PublicKey;
import java.security.interfaces.RSAPublicKey;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * Selects verification keys so that the algorithm is the key's, never the token's choice
 * (RFC 8725 section 3.1): the header's {@code alg} must be in the allowlist and equal the
 * {@code alg} the JWK itself declares; a JWK without {@code alg} is never used.
 */
final class AlgorithmBoundKeySelector extends JWSVerificationKeySelector<SecurityContext> {

  /** RSA keys below this size are ignored (RFC 7518 section 3.3). */
  private static final int MIN_RSA_BITS = 2048;

  AlgorithmBoundKeySelector(Set<JWSAlgorithm> allowed, JWKSource<SecurityContext> keys) {
    super(allowed, keys);
  }

  @Override
  protected JWKMatcher createJWKMatcher(JWSHeader header) {
    JWKMatcher allowed = super.createJWKMatcher(header); // null when alg is not allowed
    if (allowed == null) {
      return null;
    }
    JWSAlgorithm alg = header.getAlgorithm();
    JWKMatcher.Builder bound = new JWKMatcher.Builder(allowed).algorithm(alg);
    Set<Curve> curves = Curve.forJWSAlgorithm(alg); // ES256 only on P-256; null for RSA
    return curves == null ? bound.build() : bound.curves(curves).build();
  }

  /**
   * The keys for {@code header}, or a {@link NoKey} saying why there are none. Keys are
   * looked up by {@code kid} alone, so that an unknown kid (a rotation) triggers the key
   * source's rate-limited refresh and a known kid with another algorithm does not. Unlike
   * Nimbus's KeyConverter, this also turns Ed25519/Ed448 JWKs into (JDK) keys.
   */
  @Override
  public List<Key> selectJWSKeys(JWSHeader header, SecurityContext context)
      throws KeySourceException {
    JWKMatcher bound = createJWKMatcher(header);
    if (bound == null) {
      throw new NoKey(Reason.REASON_DISALLOWED_ALGORITHM, "algorithm not allowed");
    }
    List<Key> keys = new ArrayList<>();
    for (JWK jwk : named(header.getKeyID(), context)) {
      if (bound.matches(jwk)) {
        publicKey(jwk).ifPresent(keys::add);
      }
    }
    if (keys.isEmpty()) {
      throw new NoKey(Reason.REASON_DISALLOWED_ALGORITHM, "no usable key bound to this algorithm");
    }
    return keys;
  }

  /** The keys with this kid; never empty. tokend names the signing key in every token. */
  private List<JWK> named(String kid, SecurityContext context) throws KeySourceException {
    if (kid == null) {
      throw new NoKey(Reason.REASON_UNKNOWN_KEY, "header names no kid");
    }
    JWKSelector byKid = new JWKSelector(new JWKMatcher.Builder().keyID(kid).build());
    List<JWK> named;
    try {
      named = getJWKSource().get(byKid, context);
    } catch (RateLimitReachedException e) {
      // The kid is not in the cached set, which was refreshed moments ago.
      throw new NoKey(Reason.REASON_UNKNOWN_KEY, "no key with this kid (refresh rate-limited)");
    }
    if (named.isEmpty()) {
      throw new NoKey(Reason.REASON_UNKNOWN_KEY, "no key with this kid");
    }
    return named;
  }

  /** The public key of a JWK, or empty when it is unusable (skipped, as Nimbus does). */
  private static Optional<PublicKey> publicKey(JWK jwk) {
    try {
      if (jwk instanceof RSAKey rsa) {
        RSAPublicKey key = rsa.toRSAPublicKey();
        return key.getModulus().bitLength() >= MIN_RSA_BITS ? Optional.of(key) : Optional.empty();
      }
      if (jwk instanceof ECKey ec) {
        return Optional.of(ec.toECPublicKey());
      }
      if (jwk instanceof OctetKeyPair okp) {
        return Optional.of(EdDsa.toPublicKey(okp));
      }
    } catch (JOSEException | GeneralSecurityException e) {
      return Optional.empty();
    }
    return Optional.empty();
  }

  /**
   * No key may verify the token. A KeySourceException only because that is all a key
   * selector may throw; {@link TokendVerifier} turns it into an InvalidTokenException.
   */
  static final class NoKey extends KeySourceException {

    private static final long serialVersionUID = 1L;

    private final Reason reason;

    NoKey(Reason reason, String message) {
      super(message);
      this.reason = reason;
    }

    InvalidTokenException toInvalidToken() {
      return new InvalidTokenException(reason, getMessage(), null);
    }
  }
}
