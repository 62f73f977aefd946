package dev.tokend.client;

import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.JWSVerifier;
import com.nimbusds.jose.crypto.factories.DefaultJWSVerifierFactory;
import com.nimbusds.jose.crypto.impl.BaseJWSProvider;
import com.nimbusds.jose.jwk.Curve;
import com.nimbusds.jose.jwk.OctetKeyPair;
import com.nimbusds.jose.util.Base64URL;
import java.security.GeneralSecurityException;
import java.security.InvalidKeyException;
import java.security.Key;
import java.security.KeyFactory;
import java.security.PublicKey;
import java.security.Signature;
import java.security.SignatureException;
import java.security.interfaces.EdECPublicKey;
import java.security.spec.X509EncodedKeySpec;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.Map;
import java.util.Set;

/**
 * EdDSA (RFC 8037) on the JDK's own Ed25519/Ed448 (Java 15+). Nimbus can neither turn an
 * OKP JWK into a {@link PublicKey} nor build an EdDSA verifier from one (its own
 * Ed25519Verifier needs Tink and an OctetKeyPair), so its JWT processor cannot verify
 * EdDSA without the pieces here.
 */
final class EdDsa {

  /** DER SubjectPublicKeyInfo up to the raw key (RFC 8410 section 4), by curve. */
  private static final Map<Curve, byte[]> SPKI_PREFIX =
      Map.of(
          Curve.Ed25519, HexFormat.of().parseHex("302a300506032b6570032100"),
          Curve.Ed448, HexFormat.of().parseHex("3043300506032b6571033a00"));

  private static final Map<Curve, Integer> KEY_LENGTH = Map.of(Curve.Ed25519, 32, Curve.Ed448, 57);

  private EdDsa() {}

  /** The JDK public key of an Ed25519 or Ed448 JWK; X25519/X448 cannot sign. */
  static PublicKey toPublicKey(OctetKeyPair jwk) throws GeneralSecurityException {
    Curve curve = jwk.getCurve();
    byte[] prefix = SPKI_PREFIX.get(curve);
    byte[] x = jwk.getDecodedX();
    if (prefix == null || x.length != KEY_LENGTH.get(curve)) {
      throw new InvalidKeyException("not an Ed25519 or Ed448 public key");
    }
    byte[] encoded = new byte[prefix.length + x.length];
    System.arraycopy(prefix, 0, encoded, 0, prefix.length);
    System.arraycopy(x, 0, encoded, prefix.length, x.length);
    return KeyFactory.getInstance(curve.getName()).generatePublic(new X509EncodedKeySpec(encoded));
  }

  /** Verifies {@code EdDSA} JWS signatures with one JDK EdEC public key. */
  static final class Verifier extends BaseJWSProvider implements JWSVerifier {

    private final EdECPublicKey key;

    Verifier(EdECPublicKey key) {
      super(Set.of(JWSAlgorithm.EdDSA));
      this.key = key;
    }

    @Override
    public boolean verify(JWSHeader header, byte[] signingInput, Base64URL signature)
        throws JOSEException {
      // Like Nimbus's verifiers: refuse a header whose "crit" names extensions we do not
      // implement (RFC 7515 section 4.1.11); none are implemented here.
      if (!JWSAlgorithm.EdDSA.equals(header.getAlgorithm())
          || (header.getCriticalParams() != null && !header.getCriticalParams().isEmpty())) {
        return false;
      }
      try {
        Signature verifier = Signature.getInstance("EdDSA");
        verifier.initVerify(key);
        verifier.update(signingInput);
        return verifier.verify(signature.decode());
      } catch (SignatureException e) {
        return false; // a malformed signature is a bad signature
      } catch (GeneralSecurityException e) {
        throw new JOSEException("EdDSA verification unavailable: " + e.getMessage(), e);
      }
    }
  }

  /** Nimbus's verifier factory (RSA, EC) plus EdDSA with JDK keys. */
  static final class VerifierFactory extends DefaultJWSVerifierFactory {

    private static final Set<JWSAlgorithm> ALGORITHMS = algorithms();

    private static Set<JWSAlgorithm> algorithms() {
      Set<JWSAlgorithm> all = new HashSet<>(DefaultJWSVerifierFactory.SUPPORTED_ALGORITHMS);
      all.add(JWSAlgorithm.EdDSA);
      return Set.copyOf(all);
    }

    @Override
    public Set<JWSAlgorithm> supportedJWSAlgorithms() {
      return ALGORITHMS;
    }

    @Override
    public JWSVerifier createJWSVerifier(JWSHeader header, Key key) throws JOSEException {
      if (!JWSAlgorithm.EdDSA.equals(header.getAlgorithm())) {
        return super.createJWSVerifier(header, key);
      }
      if (!(key instanceof EdECPublicKey edKey)) {
        throw new JOSEException("EdDSA needs an EdEC public key");
      }
      return new Verifier(edKey);
    }
  }
}
