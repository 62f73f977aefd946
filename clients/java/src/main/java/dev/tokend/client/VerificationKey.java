package dev.tokend.client;

import java.math.BigInteger;
import java.security.AlgorithmParameters;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PublicKey;
import java.security.Signature;
import java.security.SignatureException;
import java.security.interfaces.ECPublicKey;
import java.security.interfaces.EdECPublicKey;
import java.security.interfaces.RSAPublicKey;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPoint;
import java.security.spec.ECPublicKeySpec;
import java.security.spec.MGF1ParameterSpec;
import java.security.spec.PSSParameterSpec;
import java.security.spec.RSAPublicKeySpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * One verification key: its {@code kid}, the single {@code alg} it is bound to (RFC 8725
 * section 3.1) and the JDK public key. Construction checks that the algorithm fits the key
 * (curve, RSA size and exponent, ROCA), so {@link #verify} does no key checks. Signatures are
 * checked on the JDK's own providers with the exact lengths of RFC 7518 and RFC 8032.
 */
public final class VerificationKey {

  private static final Set<String> PRIVATE_MEMBERS =
      Set.of("d", "p", "q", "dp", "dq", "qi", "k", "oth");

  private static final int RSA_MIN_BITS = 2048; // RFC 7518 section 3.3 / 3.5
  private static final int RSA_MAX_BITS = 8192; // verification cost grows with the modulus
  private static final int RSA_MAX_EXPONENT_BITS = 64;

  private final String kid;
  private final String alg;
  private final PublicKey key;
  private final Algorithm algorithm;

  /**
   * Binds {@code key} to {@code alg}.
   *
   * @param kid the key id tokens name, or {@code null} (such a key is never selected)
   * @param alg one of {@link Jws#SUPPORTED_ALGORITHMS}
   * @param key a JDK EC, RSA or EdEC public key fitting {@code alg}
   * @throws IllegalArgumentException when the key cannot be used with {@code alg}
   */
  public VerificationKey(String kid, String alg, PublicKey key) {
    if (kid != null && kid.isEmpty()) {
      throw new IllegalArgumentException("kid must be a non-empty string");
    }
    this.kid = kid;
    this.alg = Objects.requireNonNull(alg, "alg");
    this.key = Objects.requireNonNull(key, "key");
    this.algorithm = Algorithm.of(alg);
    algorithm.check(key);
  }

  /** The key id, or {@code null}. */
  public String kid() {
    return kid;
  }

  /** The algorithm this key is bound to. */
  public String alg() {
    return alg;
  }

  /** The JDK public key. */
  public PublicKey key() {
    return key;
  }

  /** True when {@code signature} is valid for {@code signingInput}; never throws for a bad one. */
  boolean verify(byte[] signingInput, byte[] signature) {
    try {
      return algorithm.verify(key, signingInput, signature);
    } catch (GeneralSecurityException | RuntimeException e) {
      return false; // a signature the provider cannot even parse is a bad signature
    }
  }

  @Override
  public String toString() {
    return "VerificationKey(kid=" + kid + ", alg=" + alg + ")";
  }

  // ---------------------------------------------------------------------------------------
  // From a JWK (RFC 7517 section 4)
  // ---------------------------------------------------------------------------------------

  static boolean hasPrivateMembers(Map<?, ?> jwk) {
    for (String name : PRIVATE_MEMBERS) {
      if (jwk.containsKey(name)) {
        return true;
      }
    }
    return false;
  }

  /** Builds a key from one public JWK; IllegalArgumentException says why it is unusable. */
  static VerificationKey fromJwk(Map<?, ?> jwk) {
    if (hasPrivateMembers(jwk)) {
      throw new IllegalArgumentException("JWK carries private key members");
    }
    checkKeyUsage(jwk);
    Object kid = jwk.get("kid");
    Object alg = jwk.get("alg");
    if (alg != null && !(alg instanceof String)) {
      throw new IllegalArgumentException("JWK alg must be a string"); // RFC 7517 section 4.4
    }
    if (kid != null && !(kid instanceof String)) {
      throw new IllegalArgumentException("kid must be a non-empty string");
    }
    Object kty = jwk.get("kty");
    PublicKey key;
    String implied;
    try {
      if ("EC".equals(kty)) {
        Curve curve = Curve.named(jwk.get("crv"));
        key = curve.publicKey(member(jwk, "x"), member(jwk, "y"));
        implied = curve.alg;
      } else if ("RSA".equals(kty)) {
        key = rsaKey(uint(jwk, "n"), uint(jwk, "e"));
        implied = null;
      } else if ("OKP".equals(kty)) {
        key = okpKey(jwk.get("crv"), member(jwk, "x"));
        implied = "EdDSA";
      } else if ("oct".equals(kty)) {
        throw new IllegalArgumentException("symmetric (oct) keys are never accepted"); // 8725 3.1
      } else {
        throw new IllegalArgumentException("unsupported kty");
      }
    } catch (GeneralSecurityException e) {
      throw new IllegalArgumentException("unusable key: " + e.getMessage(), e);
    }
    String bound = alg != null ? (String) alg : implied;
    if (bound == null) {
      // RS* and PS* share one key type: without "alg" the header would choose.
      throw new IllegalArgumentException("RSA JWK needs alg (RS256/384/512 or PS256/384/512)");
    }
    return new VerificationKey((String) kid, bound, key);
  }

  private static void checkKeyUsage(Map<?, ?> jwk) {
    Object use = jwk.get("use");
    if (use != null && !"sig".equals(use)) {
      throw new IllegalArgumentException("JWK use is not sig"); // RFC 7517 section 4.2
    }
    if (!jwk.containsKey("key_ops") || jwk.get("key_ops") == null) {
      return;
    }
    // RFC 7517 section 4.3: an array of unique strings; we need "verify" among them.
    if (!(jwk.get("key_ops") instanceof List<?> ops)
        || !ops.stream().allMatch(op -> op instanceof String)) {
      throw new IllegalArgumentException("JWK key_ops must be an array of strings");
    }
    if (new HashSet<>(ops).size() != ops.size() || !ops.contains("verify")) {
      throw new IllegalArgumentException("JWK key_ops does not allow verify");
    }
  }

  private static byte[] member(Map<?, ?> jwk, String name) {
    Object value = jwk.get(name);
    byte[] bytes = value instanceof String text ? Base64Url.decode(text) : null;
    if (bytes == null) {
      throw new IllegalArgumentException("JWK member " + name + " must be a base64url string");
    }
    return bytes;
  }

  private static BigInteger uint(Map<?, ?> jwk, String name) {
    byte[] raw = member(jwk, name);
    // RFC 7518 section 2 Base64urlUInt: the minimum number of octets, so no leading zero.
    if (raw.length == 0 || raw[0] == 0) {
      throw new IllegalArgumentException("JWK member " + name + " is not a minimal unsigned integer");
    }
    return new BigInteger(1, raw);
  }

  private static PublicKey rsaKey(BigInteger n, BigInteger e) throws GeneralSecurityException {
    if (n.bitLength() > RSA_MAX_BITS || e.bitLength() > RSA_MAX_EXPONENT_BITS) {
      throw new IllegalArgumentException("RSA key members are too large");
    }
    return KeyFactory.getInstance("RSA").generatePublic(new RSAPublicKeySpec(n, e));
  }

  /** DER SubjectPublicKeyInfo up to the raw key (RFC 8410 section 4), by curve. */
  private static final Map<String, byte[]> OKP_PREFIX =
      Map.of(
          "Ed25519", HexFormat.of().parseHex("302a300506032b6570032100"),
          "Ed448", HexFormat.of().parseHex("3043300506032b6571033a00"));

  private static final Map<String, Integer> OKP_LENGTH = Map.of("Ed25519", 32, "Ed448", 57);

  private static PublicKey okpKey(Object crv, byte[] x) throws GeneralSecurityException {
    byte[] prefix = crv instanceof String name ? OKP_PREFIX.get(name) : null;
    if (prefix == null) {
      throw new IllegalArgumentException("unsupported OKP crv"); // RFC 8037: X25519 cannot sign
    }
    if (x.length != OKP_LENGTH.get(crv)) {
      throw new IllegalArgumentException("OKP x has the wrong length");
    }
    checkEdwardsEncoding((String) crv, x);
    byte[] encoded = new byte[prefix.length + x.length];
    System.arraycopy(prefix, 0, encoded, 0, prefix.length);
    System.arraycopy(x, 0, encoded, prefix.length, x.length);
    return KeyFactory.getInstance((String) crv).generatePublic(new X509EncodedKeySpec(encoded));
  }

  private static final BigInteger ED25519_P = BigInteger.TWO.pow(255).subtract(BigInteger.valueOf(19));
  private static final BigInteger ED448_P =
      BigInteger.TWO.pow(448).subtract(BigInteger.TWO.pow(224)).subtract(BigInteger.ONE);
  /** y of the two order-8 points of edwards25519 (p - y gives the other two). */
  private static final BigInteger ED25519_ORDER_8_Y = new BigInteger(
      "2707385501144840649318225287225658788936804267575313519463743609750303402022");

  /** RFC 8032 sections 5.1.3 / 5.2.3 step 1: the encoded y is below p. */
  private static void checkEdwardsEncoding(String crv, byte[] x) {
    byte[] bigEndian = new byte[x.length];
    for (int i = 0; i < x.length; i++) {
      bigEndian[i] = x[x.length - 1 - i];
    }
    BigInteger y;
    BigInteger p;
    if (crv.equals("Ed25519")) {
      p = ED25519_P;
      y = new BigInteger(1, bigEndian).clearBit(255); // the top bit is the sign of x
    } else {
      // RFC 8032 section 5.2.3: the last octet holds only the sign of x, in its top bit.
      if ((x[x.length - 1] & 0x7F) != 0) {
        throw new IllegalArgumentException("OKP x is not a canonical Ed448 point encoding");
      }
      p = ED448_P;
      y = new BigInteger(1, java.util.Arrays.copyOfRange(bigEndian, 1, bigEndian.length));
    }
    if (y.compareTo(p) >= 0) {
      throw new IllegalArgumentException("OKP x is not a canonical point encoding");
    }
    checkNotSmallOrder(crv, y);
  }

  /**
   * With a public key of small order (the identity, say) forged signatures verify for every
   * message, as with RSA e = 1; the JDK does not refuse such keys. Points of small order have
   * y in {0, 1, p - 1} and, on edwards25519, the two order-8 values.
   */
  private static void checkNotSmallOrder(String crv, BigInteger y) {
    BigInteger p = crv.equalsIgnoreCase("Ed25519") ? ED25519_P : ED448_P;
    boolean small = y.signum() == 0 || y.equals(BigInteger.ONE)
        || y.equals(p.subtract(BigInteger.ONE));
    if (p == ED25519_P) {
      small |= y.equals(ED25519_ORDER_8_Y) || y.equals(p.subtract(ED25519_ORDER_8_Y));
    }
    if (small) {
      throw new IllegalArgumentException("OKP x is a point of small order");
    }
  }

  // ---------------------------------------------------------------------------------------
  // Curves and algorithms (RFC 7518 section 3, RFC 8037)
  // ---------------------------------------------------------------------------------------

  /** The NIST curves of RFC 7518 section 3.4, with what point and signature checks need. */
  enum Curve {
    P256("P-256", "ES256", "secp256r1", 32),
    P384("P-384", "ES384", "secp384r1", 48),
    P521("P-521", "ES512", "secp521r1", 66);

    final String jwkName;
    final String alg;
    final int size;
    final ECParameterSpec params;

    Curve(String jwkName, String alg, String stdName, int size) {
      this.jwkName = jwkName;
      this.alg = alg;
      this.size = size;
      try {
        AlgorithmParameters parameters = AlgorithmParameters.getInstance("EC");
        parameters.init(new ECGenParameterSpec(stdName));
        this.params = parameters.getParameterSpec(ECParameterSpec.class);
      } catch (GeneralSecurityException e) {
        throw new IllegalStateException("the JDK lacks " + stdName, e);
      }
    }

    static Curve named(Object crv) {
      for (Curve curve : values()) {
        if (curve.jwkName.equals(crv)) {
          return curve;
        }
      }
      throw new IllegalArgumentException("unsupported EC crv");
    }

    BigInteger prime() {
      return ((java.security.spec.ECFieldFp) params.getCurve().getField()).getP();
    }

    BigInteger order() {
      return params.getOrder();
    }

    PublicKey publicKey(byte[] xBytes, byte[] yBytes) throws GeneralSecurityException {
      // RFC 7518 sections 6.2.1.2-3: x and y are exactly the coordinate size.
      if (xBytes.length != size || yBytes.length != size) {
        throw new IllegalArgumentException("EC coordinates have the wrong length");
      }
      BigInteger x = new BigInteger(1, xBytes);
      BigInteger y = new BigInteger(1, yBytes);
      BigInteger p = prime();
      if (x.compareTo(p) >= 0 || y.compareTo(p) >= 0) {
        throw new IllegalArgumentException("EC coordinates are not reduced");
      }
      // The JDK does not refuse points off the curve (invalid-curve attacks): check here.
      BigInteger a = params.getCurve().getA();
      BigInteger b = params.getCurve().getB();
      BigInteger rhs = x.pow(3).add(a.multiply(x)).add(b).mod(p);
      if (!y.multiply(y).mod(p).equals(rhs)) {
        throw new IllegalArgumentException("EC point is not on the curve");
      }
      return KeyFactory.getInstance("EC")
          .generatePublic(new ECPublicKeySpec(new ECPoint(x, y), params));
    }
  }

  /** How one JWS algorithm checks its key and verifies a signature. */
  private enum Algorithm {
    ES256(Curve.P256, "SHA256withECDSAinP1363Format"),
    ES384(Curve.P384, "SHA384withECDSAinP1363Format"),
    ES512(Curve.P521, "SHA512withECDSAinP1363Format"),
    RS256("SHA-256", null),
    RS384("SHA-384", null),
    RS512("SHA-512", null),
    PS256("RSASSA-PSS", "SHA-256"),
    PS384("RSASSA-PSS", "SHA-384"),
    PS512("RSASSA-PSS", "SHA-512"),
    EdDSA("EdDSA", null);

    final Curve curve; // ECDSA only
    final String jdkName;
    final PSSParameterSpec pss; // PSS only

    Algorithm(Curve curve, String jdkName) {
      this.curve = curve;
      this.jdkName = jdkName;
      this.pss = null;
    }

    Algorithm(String jdkName, String pssHash) {
      this.curve = null;
      this.jdkName = jdkName;
      // RFC 7518 section 3.5: MGF1 with the same hash, salt as long as the hash.
      this.pss = pssHash == null ? null : new PSSParameterSpec(pssHash, "MGF1",
          new MGF1ParameterSpec(pssHash), Integer.parseInt(pssHash.substring(4)) / 8, 1);
    }

    static Algorithm of(String alg) {
      try {
        return valueOf(alg);
      } catch (IllegalArgumentException e) {
        throw new IllegalArgumentException("unsupported or disallowed algorithm");
      }
    }

    boolean isRsa() {
      return name().startsWith("RS") || name().startsWith("PS");
    }

    void check(PublicKey key) {
      if (curve != null) {
        if (!(key instanceof ECPublicKey ec)
            || ec.getParams().getCurve().getField().getFieldSize()
                != curve.params.getCurve().getField().getFieldSize()
            || !ec.getParams().getCurve().equals(curve.params.getCurve())) {
          throw new IllegalArgumentException(name() + " needs a " + curve.jwkName + " key");
        }
      } else if (isRsa()) {
        if (!(key instanceof RSAPublicKey rsa)) {
          throw new IllegalArgumentException(name() + " needs an RSA key");
        }
        checkRsaPolicy(rsa);
      } else if (!(key instanceof EdECPublicKey ed)) {
        throw new IllegalArgumentException("EdDSA needs an Ed25519 or Ed448 key"); // RFC 8037
      } else {
        BigInteger y = ed.getPoint().getY();
        String crv = ed.getParams().getName();
        if (y.compareTo(crv.equalsIgnoreCase("Ed25519") ? ED25519_P : ED448_P) >= 0) {
          throw new IllegalArgumentException("OKP x is not a canonical point encoding");
        }
        checkNotSmallOrder(crv, y);
      }
    }

    boolean verify(PublicKey key, byte[] input, byte[] signature)
        throws GeneralSecurityException {
      if (!lengthFits(key, signature)) {
        return false;
      }
      if (isRsa() && pss == null) {
        return Pkcs1.verify((RSAPublicKey) key, jdkName, input, signature);
      }
      Signature verifier = Signature.getInstance(edName(key));
      if (pss != null) {
        verifier.setParameter(pss);
      }
      verifier.initVerify(key);
      verifier.update(input);
      try {
        return verifier.verify(signature);
      } catch (SignatureException e) {
        return false;
      }
    }

    private String edName(PublicKey key) {
      return this == EdDSA ? ((EdECPublicKey) key).getParams().getName() : jdkName;
    }

    private boolean lengthFits(PublicKey key, byte[] signature) {
      if (curve != null) {
        // RFC 7518 section 3.4: R || S, each exactly the curve size.
        if (signature.length != 2 * curve.size) {
          return false;
        }
        // FIPS 186-5 section 6.4.2: r and s in [1, n-1] before any curve arithmetic.
        BigInteger n = curve.order();
        BigInteger r = new BigInteger(1, java.util.Arrays.copyOfRange(signature, 0, curve.size));
        BigInteger s = new BigInteger(1,
            java.util.Arrays.copyOfRange(signature, curve.size, signature.length));
        return r.signum() > 0 && s.signum() > 0 && r.compareTo(n) < 0 && s.compareTo(n) < 0;
      }
      if (isRsa()) {
        // RFC 8017 sections 8.1.2 / 8.2.2 step 1: exactly k octets.
        int k = (((RSAPublicKey) key).getModulus().bitLength() + 7) / 8;
        return signature.length == k;
      }
      // RFC 8032 sections 5.1.7 / 5.2.7: a fixed length per curve.
      String name = ((EdECPublicKey) key).getParams().getName();
      return signature.length == ("Ed25519".equalsIgnoreCase(name) ? 64 : 114);
    }
  }

  /**
   * RSASSA-PKCS1-v1_5 verification by encoding and comparing (RFC 8017 section 8.2.2 steps
   * 3-4), because the JDK's SHA*withRSA also accepts a DigestInfo without the NULL parameters,
   * an encoding RFC 8017 does not produce and the other tokend verifiers refuse.
   */
  private static final class Pkcs1 {
    /** The DER DigestInfo prefixes of RFC 8017 section 9.2 note 1 (with NULL parameters). */
    private static final Map<String, byte[]> DIGEST_INFO = Map.of(
        "SHA-256", HexFormat.of().parseHex("3031300d060960864801650304020105000420"),
        "SHA-384", HexFormat.of().parseHex("3041300d060960864801650304020205000430"),
        "SHA-512", HexFormat.of().parseHex("3051300d060960864801650304020305000440"));

    static boolean verify(RSAPublicKey key, String hash, byte[] input, byte[] signature)
        throws GeneralSecurityException {
      BigInteger n = key.getModulus();
      BigInteger s = new BigInteger(1, signature);
      // RFC 8017 section 5.2.2 step 1: the signature representative is below n.
      if (s.compareTo(n) >= 0) {
        return false;
      }
      int k = (n.bitLength() + 7) / 8;
      byte[] em = toFixed(s.modPow(key.getPublicExponent(), n), k);
      byte[] digest = java.security.MessageDigest.getInstance(hash).digest(input);
      byte[] prefix = DIGEST_INFO.get(hash);
      int tLen = prefix.length + digest.length;
      if (k < tLen + 11) {
        return false;
      }
      byte[] expected = new byte[k];
      expected[1] = 0x01;
      java.util.Arrays.fill(expected, 2, k - tLen - 1, (byte) 0xFF);
      System.arraycopy(prefix, 0, expected, k - tLen, prefix.length);
      System.arraycopy(digest, 0, expected, k - digest.length, digest.length);
      return java.security.MessageDigest.isEqual(em, expected);
    }

    private static byte[] toFixed(BigInteger value, int length) {
      byte[] raw = value.toByteArray();
      byte[] out = new byte[length];
      int copy = Math.min(raw.length, length);
      System.arraycopy(raw, raw.length - copy, out, length - copy, copy);
      return out;
    }
  }

  private static void checkRsaPolicy(RSAPublicKey key) {
    int bits = key.getModulus().bitLength();
    if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
      throw new IllegalArgumentException(
          "RSA modulus must be " + RSA_MIN_BITS + "-" + RSA_MAX_BITS + " bits");
    }
    BigInteger e = key.getPublicExponent();
    // e = 1 makes every "signature" equal its message; even e is not RSA.
    if (e.compareTo(BigInteger.valueOf(3)) < 0 || !e.testBit(0)
        || e.bitLength() > RSA_MAX_EXPONENT_BITS) {
      throw new IllegalArgumentException(
          "RSA public exponent must be odd, at least 3 and at most 64 bits");
    }
    if (Roca.hasFingerprint(key.getModulus())) {
      throw new IllegalArgumentException("RSA modulus has the ROCA fingerprint (CVE-2017-15361)");
    }
  }

  /**
   * ROCA (CVE-2017-15361): moduli from the flawed Infineon generator are, modulo each of these
   * primes, powers of 65537. A random modulus passes all 38 tests with probability ~2^-154.
   */
  private static final class Roca {
    private static final int[] PRIMES = {
      3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
      97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167
    };
    private static final boolean[][] RESIDUES = residues();

    private static boolean[][] residues() {
      boolean[][] all = new boolean[PRIMES.length][];
      for (int i = 0; i < PRIMES.length; i++) {
        int p = PRIMES[i];
        all[i] = new boolean[p];
        for (int k = 0; k < p; k++) {
          all[i][BigInteger.valueOf(65537).modPow(BigInteger.valueOf(k), BigInteger.valueOf(p))
              .intValue()] = true;
        }
      }
      return all;
    }

    static boolean hasFingerprint(BigInteger modulus) {
      for (int i = 0; i < PRIMES.length; i++) {
        if (!RESIDUES[i][modulus.mod(BigInteger.valueOf(PRIMES[i])).intValue()]) {
          return false;
        }
      }
      return true;
    }
  }
}
