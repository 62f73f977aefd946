package dev.tokend.client;

import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JOSEObjectType;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.JWSSigner;
import com.nimbusds.jose.crypto.ECDSASigner;
import com.nimbusds.jose.crypto.RSASSASigner;
import com.nimbusds.jose.crypto.impl.BaseJWSProvider;
import com.nimbusds.jose.jwk.Curve;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.jwk.JWK;
import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.KeyUse;
import com.nimbusds.jose.jwk.OctetKeyPair;
import com.nimbusds.jose.jwk.RSAKey;
import com.nimbusds.jose.jwk.gen.ECKeyGenerator;
import com.nimbusds.jose.jwk.gen.RSAKeyGenerator;
import com.nimbusds.jose.util.Base64URL;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.SignedJWT;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.Signature;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Date;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;

/** Signing keys (one per algorithm tokend uses) and a minter of test tokens. */
final class TestTokens {

  static final String ISSUER = "https://tokend.test";
  static final String AUDIENCE = "orders";
  static final String CLIENT_ID = "spiffe://tokend.test/unit";

  /** The signers by kid; each kid's JWK declares the algorithm of the same name. */
  private final Map<String, JWSSigner> signers;

  private final JWKSet publicKeys;

  private static TestTokens shared;

  private TestTokens(Map<String, JWSSigner> signers, JWKSet publicKeys) {
    this.signers = signers;
    this.publicKeys = publicKeys;
  }

  /** Fresh keys: kids "ES256", "RS256", "PS256" and "EdDSA", each bound to that alg. */
  static TestTokens generate() throws JOSEException, GeneralSecurityException {
    return generate("ES256", "RS256", "PS256", "EdDSA");
  }

  /** Fresh keys with these kids (algorithm names; RSA generation is slow). */
  static TestTokens generate(String... kids) throws JOSEException, GeneralSecurityException {
    Map<String, JWSSigner> signers = new HashMap<>();
    List<JWK> keys = new ArrayList<>();
    for (String kid : kids) {
      JWSAlgorithm alg = JWSAlgorithm.parse(kid);
      if (alg.equals(JWSAlgorithm.EdDSA)) {
        KeyPair ed = KeyPairGenerator.getInstance("Ed25519").generateKeyPair();
        signers.put(kid, new JdkEdDsaSigner(ed.getPrivate()));
        keys.add(edJwk(kid, ed));
      } else if (alg.equals(JWSAlgorithm.ES256)) {
        ECKey ec = new ECKeyGenerator(Curve.P_256).keyID(kid).algorithm(alg)
            .keyUse(KeyUse.SIGNATURE).generate();
        signers.put(kid, new ECDSASigner(ec));
        keys.add(ec.toPublicJWK());
      } else {
        RSAKey rsa = new RSAKeyGenerator(2048).keyID(kid).algorithm(alg)
            .keyUse(KeyUse.SIGNATURE).generate();
        signers.put(kid, new RSASSASigner(rsa));
        keys.add(rsa.toPublicJWK());
      }
    }
    return new TestTokens(Map.copyOf(signers), new JWKSet(keys));
  }

  /** One set of all four keys for every test class (RSA key generation is slow). */
  static synchronized TestTokens shared() throws JOSEException, GeneralSecurityException {
    if (shared == null) {
      shared = generate();
    }
    return shared;
  }

  /** The public OKP JWK of a JDK Ed25519 key pair. */
  static OctetKeyPair edJwk(String kid, KeyPair pair) {
    return edJwk(kid, pair, Curve.Ed25519, 32);
  }

  /** The public OKP JWK of a JDK EdDSA key pair: the raw key ends its X.509 encoding. */
  static OctetKeyPair edJwk(String kid, KeyPair pair, Curve curve, int keyLength) {
    byte[] spki = pair.getPublic().getEncoded();
    byte[] x = Arrays.copyOfRange(spki, spki.length - keyLength, spki.length);
    return new OctetKeyPair.Builder(curve, Base64URL.encode(x)).keyID(kid)
        .algorithm(JWSAlgorithm.EdDSA).keyUse(KeyUse.SIGNATURE).build();
  }

  /** The public keys, as tokend would publish them. */
  JWKSet publicKeys() {
    return publicKeys;
  }

  /** The claims of a valid token issued now, to be adjusted by a test. */
  static JWTClaimsSet.Builder validClaims() {
    Instant now = Instant.now();
    return new JWTClaimsSet.Builder()
        .issuer(ISSUER)
        .subject("alice")
        .audience(List.of(AUDIENCE, "billing"))
        .issueTime(Date.from(now))
        .expirationTime(Date.from(now.plusSeconds(300)))
        .jwtID(UUID.randomUUID().toString())
        .claim("scope", "orders:read orders:write")
        .claim("client_id", CLIENT_ID);
  }

  /** A valid token signed with the key {@code kid}, with that key's algorithm. */
  String mint(String kid) throws JOSEException {
    return mint(kid, header(JWSAlgorithm.parse(kid), kid, "at+jwt"), validClaims().build());
  }

  /** A token with these claims signed with the key {@code kid}. */
  String mint(String kid, JWTClaimsSet claims) throws JOSEException {
    return mint(kid, header(JWSAlgorithm.parse(kid), kid, "at+jwt"), claims);
  }

  /** A token with this header and these claims, signed with the key {@code kid}. */
  String mint(String kid, JWSHeader header, JWTClaimsSet claims) throws JOSEException {
    return sign(signers.get(kid), header, claims);
  }

  /**
   * A compact JWS of exactly these header and payload bytes, validly signed with the key
   * {@code kid} (whatever the bytes hold: duplicate names, invalid UTF-8, a BOM...).
   */
  String signRaw(String kid, String headerJson, byte[] payload) throws JOSEException {
    String input = Base64URL.encode(headerJson.getBytes(java.nio.charset.StandardCharsets.UTF_8))
        + "." + Base64URL.encode(payload);
    Base64URL signature = signers.get(kid).sign(new JWSHeader(JWSAlgorithm.parse(kid)),
        input.getBytes(java.nio.charset.StandardCharsets.US_ASCII));
    return input + "." + signature;
  }

  /** The standard header of a token signed with the key {@code kid}. */
  static String headerJson(String kid) {
    return "{\"alg\":\"" + kid + "\",\"kid\":\"" + kid + "\",\"typ\":\"at+jwt\"}";
  }

  /** The claims of a valid token issued now, as JSON, with {@code extra} members appended. */
  static String claimsJson(String extra) {
    long now = Instant.now().getEpochSecond();
    return "{\"iss\":\"" + ISSUER + "\",\"sub\":\"alice\",\"aud\":\"" + AUDIENCE
        + "\",\"iat\":" + now + ",\"exp\":" + (now + 300) + ",\"jti\":\"" + UUID.randomUUID()
        + "\",\"scope\":\"orders:read\"" + extra + "}";
  }

  /** The jti of a token this class minted. */
  static String jtiOf(String token) throws java.text.ParseException {
    return SignedJWT.parse(token).getJWTClaimsSet().getJWTID();
  }

  static String sign(JWSSigner signer, JWSHeader header, JWTClaimsSet claims) throws JOSEException {
    SignedJWT jwt = new SignedJWT(header, claims);
    jwt.sign(signer);
    return jwt.serialize();
  }

  static JWSHeader header(JWSAlgorithm alg, String kid, String typ) {
    JWSHeader.Builder header = new JWSHeader.Builder(alg).keyID(kid);
    return (typ == null ? header : header.type(new JOSEObjectType(typ))).build();
  }

  /** Signs EdDSA with the JDK, as Nimbus's own Ed25519Signer needs Tink. */
  static final class JdkEdDsaSigner extends BaseJWSProvider implements JWSSigner {

    private final PrivateKey key;

    JdkEdDsaSigner(PrivateKey key) {
      super(Set.of(JWSAlgorithm.EdDSA));
      this.key = key;
    }

    @Override
    public Base64URL sign(JWSHeader header, byte[] signingInput) throws JOSEException {
      try {
        Signature signer = Signature.getInstance("EdDSA");
        signer.initSign(key);
        signer.update(signingInput);
        return Base64URL.encode(signer.sign());
      } catch (GeneralSecurityException e) {
        throw new JOSEException(e.getMessage(), e);
      }
    }
  }
}
