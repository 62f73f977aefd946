package dev.tokend.client;

import dev.tokend.v1.Reason;
import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.Map;
import java.util.Set;

/**
 * The signature-only layer: a compact JWS, a {@link JwkSet} and an algorithm allowlist give
 * the payload bytes or an {@link InvalidTokenException}. The same rules as the Python
 * client's jose.verify_compact (RFC 7515, RFC 8725):
 *
 * <ul>
 *   <li>compact serialization only: exactly three segments of canonical unpadded base64url,
 *       ASCII only;
 *   <li>the header is a strict JSON object (UTF-8, no duplicate names);
 *   <li>the key is chosen by {@code kid} from the set only; {@code jku}, {@code x5u}, {@code
 *       jwk}, {@code x5c}, any {@code crit} and {@code b64} other than true are MALFORMED;
 *   <li>the algorithm is bound to the key: the header {@code alg} must equal the key's and be
 *       allowed; {@code none}, HMAC and unknown algorithms are DISALLOWED_ALGORITHM;
 *   <li>signatures have their exact lengths (ECDSA {@code r||s} with {@code 0 < r,s < n},
 *       RSA the modulus length, EdDSA 64 or 114 bytes).
 * </ul>
 */
public final class Jws {

  /** Every algorithm this layer implements. Never {@code none}, never HMAC. */
  public static final Set<String> SUPPORTED_ALGORITHMS =
      Set.of("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
          "EdDSA");

  /** Anything bigger is refused before parsing; the verifier applies a tighter limit. */
  public static final int MAX_COMPACT_BYTES = 64 * 1024;

  // RFC 8725 section 3.10 / RFC 7515 sections 4.1.2-4.1.6: keys come from the set, never
  // from the token.
  private static final Set<String> KEY_SOURCE_HEADERS = Set.of("jku", "x5u", "jwk", "x5c");

  private Jws() {}

  /** A JWS whose signature verified: its header, payload and the key used. */
  record Verified(Map<String, Object> header, byte[] payload, VerificationKey key) {}

  /**
   * Verifies a compact JWS and returns its payload.
   *
   * @param token the compact JWS
   * @param keys the keys that may have signed it
   * @param algorithms the allowed algorithms (a subset of {@link #SUPPORTED_ALGORITHMS})
   * @return the decoded payload
   * @throws InvalidTokenException when the token is not a validly signed JWS, with the reason
   */
  public static byte[] verifyCompact(String token, JwkSet keys, Collection<String> algorithms)
      throws InvalidTokenException {
    return verify(token, keys, algorithms).payload();
  }

  /**
   * Verifies a compact JWS given as bytes (which must be ASCII).
   *
   * @param token the compact JWS
   * @param keys the keys that may have signed it
   * @param algorithms the allowed algorithms
   * @return the decoded payload
   * @throws InvalidTokenException when the token is not a validly signed JWS, with the reason
   */
  public static byte[] verifyCompact(byte[] token, JwkSet keys, Collection<String> algorithms)
      throws InvalidTokenException {
    return verify(asciiText(token), keys, algorithms).payload();
  }

  static String asciiText(byte[] token) throws InvalidTokenException {
    if (token.length > MAX_COMPACT_BYTES) {
      throw invalid(Reason.REASON_TOO_LARGE, "token exceeds " + MAX_COMPACT_BYTES + " bytes");
    }
    for (byte b : token) {
      if (b < 0) {
        throw invalid(Reason.REASON_MALFORMED, "token contains non-ASCII bytes");
      }
    }
    return new String(token, StandardCharsets.US_ASCII);
  }

  static Verified verify(String token, JwkSet keys, Collection<String> algorithms)
      throws InvalidTokenException {
    if (token == null) {
      throw invalid(Reason.REASON_MALFORMED, "token must be a string");
    }
    if (token.length() > MAX_COMPACT_BYTES) {
      throw invalid(Reason.REASON_TOO_LARGE, "token exceeds " + MAX_COMPACT_BYTES + " bytes");
    }
    for (int i = 0; i < token.length(); i++) {
      if (token.charAt(i) >= 128) {
        throw invalid(Reason.REASON_MALFORMED, "token contains non-ASCII characters");
      }
    }
    // RFC 7515 section 7.1: exactly three segments (no JSON serialization, no JWE).
    int first = token.indexOf('.');
    int last = token.lastIndexOf('.');
    if (first < 0 || first == last || token.indexOf('.', first + 1) != last) {
      throw invalid(Reason.REASON_MALFORMED, "token is not a three-segment compact JWS");
    }
    Map<String, Object> header = decodeHeader(token, first);
    VerificationKey key = selectKey(header, keys, algorithms);
    byte[] payload = decode(token, first + 1, last, "payload");
    byte[] signature = decode(token, last + 1, token.length(), "signature");
    // RFC 7515 section 5.2 step 8: the signing input is the ASCII text "header.payload".
    byte[] signingInput = token.substring(0, last).getBytes(StandardCharsets.US_ASCII);
    if (!key.verify(signingInput, signature)) {
      throw invalid(Reason.REASON_BAD_SIGNATURE, "signature does not verify");
    }
    return new Verified(header, payload, key);
  }

  private static byte[] decode(String token, int from, int to, String name)
      throws InvalidTokenException {
    byte[] bytes = Base64Url.decode(token, from, to);
    if (bytes == null) {
      throw invalid(Reason.REASON_MALFORMED, name + " is not canonical base64url");
    }
    return bytes;
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> decodeHeader(String token, int end)
      throws InvalidTokenException {
    byte[] raw = decode(token, 0, end, "header");
    Object header;
    try {
      header = StrictJson.parse(raw);
    } catch (StrictJson.JsonException e) {
      throw invalid(Reason.REASON_MALFORMED, "header is not strict JSON: " + e.getMessage());
    }
    if (!(header instanceof Map)) {
      throw invalid(Reason.REASON_MALFORMED, "header is not a JSON object"); // RFC 7515 5.2
    }
    return (Map<String, Object>) header;
  }

  private static VerificationKey selectKey(
      Map<String, Object> header, JwkSet keys, Collection<String> algorithms)
      throws InvalidTokenException {
    if (!(header.get("alg") instanceof String alg)) {
      throw invalid(Reason.REASON_MALFORMED, "header alg is missing or not a string");
    }
    // RFC 8725 sections 3.1/3.2: never "none", never HMAC, nothing we do not implement.
    if (!SUPPORTED_ALGORITHMS.contains(alg)) {
      throw invalid(Reason.REASON_DISALLOWED_ALGORITHM, "algorithm not supported");
    }
    checkHeaderMembers(header);
    Object kid = header.get("kid");
    VerificationKey key = kid instanceof String name ? keys.get(name) : null;
    if (key == null) {
      throw invalid(Reason.REASON_UNKNOWN_KEY, "no key with this kid");
    }
    // RFC 8725 section 3.1: the key fixes the algorithm; the header may only agree with it.
    if (!alg.equals(key.alg()) || !algorithms.contains(alg)) {
      throw invalid(Reason.REASON_DISALLOWED_ALGORITHM, "algorithm not allowed for this key");
    }
    return key;
  }

  private static void checkHeaderMembers(Map<String, Object> header)
      throws InvalidTokenException {
    for (String name : KEY_SOURCE_HEADERS) {
      if (header.containsKey(name)) {
        throw invalid(Reason.REASON_MALFORMED, "header jku, x5u, jwk and x5c are not accepted");
      }
    }
    if (header.containsKey("crit")) {
      // RFC 7515 section 4.1.11: we understand no extension, so any crit is refused.
      throw invalid(Reason.REASON_MALFORMED, "header crit names unsupported extensions");
    }
    // RFC 7797 section 3: unencoded payloads are not supported.
    if (header.containsKey("b64") && !Boolean.TRUE.equals(header.get("b64"))) {
      throw invalid(Reason.REASON_MALFORMED, "unencoded payload (b64) not accepted");
    }
  }

  private static InvalidTokenException invalid(Reason reason, String message) {
    return new InvalidTokenException(reason, message, null);
  }
}
