package dev.tokend.client;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * An immutable set of verification keys, looked up by {@code kid}. The policy of {@link
 * #parse} is the Python client's JwkSet.from_json:
 *
 * <ul>
 *   <li>The whole set is refused ({@link IllegalArgumentException}) when it is not {@code
 *       {"keys": [objects...]}} in strict JSON, when any entry carries private members (a
 *       publisher that leaks private keys is broken), or when two entries share a {@code kid}.
 *   <li>Other keys that cannot verify are dropped (RFC 7517 section 5 says to ignore them):
 *       unknown {@code kty}/{@code crv}, {@code use} other than {@code sig}, {@code key_ops}
 *       without {@code verify}, RSA without {@code alg} or under 2048 bits, bad exponents,
 *       ROCA moduli, points off the curve, an {@code alg} that does not fit the key. A token
 *       naming such a key is refused alone (UNKNOWN_KEY); {@link #rejected} says why.
 * </ul>
 */
public final class JwkSet {

  /** A JWK Set may be fetched over the network: bound it. */
  public static final int MAX_JWKS_BYTES = 1024 * 1024;

  private final List<VerificationKey> keys;
  private final Map<String, VerificationKey> byKid;
  private final List<String> rejected;

  private JwkSet(List<VerificationKey> keys, List<String> rejected) {
    Map<String, VerificationKey> index = new HashMap<>();
    for (VerificationKey key : keys) {
      if (key.kid() != null && index.put(key.kid(), key) != null) {
        throw new IllegalArgumentException("duplicate kid in key set"); // RFC 7517 section 4.5
      }
    }
    this.keys = List.copyOf(keys);
    this.byKid = Map.copyOf(index);
    this.rejected = List.copyOf(rejected);
  }

  /**
   * A set of these keys.
   *
   * @param keys keys with distinct kids
   * @return the set
   */
  public static JwkSet of(List<VerificationKey> keys) {
    return new JwkSet(keys, List.of());
  }

  /**
   * Parses a JWK Set document (RFC 7517 section 5).
   *
   * @param json the document as text
   * @return the usable keys
   * @throws IllegalArgumentException when the document as a whole is unusable
   */
  public static JwkSet parse(String json) {
    return parse(json.getBytes(StandardCharsets.UTF_8));
  }

  /**
   * Parses a JWK Set document given as UTF-8 bytes.
   *
   * @param json the document
   * @return the usable keys
   * @throws IllegalArgumentException when the document as a whole is unusable
   */
  public static JwkSet parse(byte[] json) {
    if (json.length > MAX_JWKS_BYTES) {
      throw new IllegalArgumentException("JWK Set document is too large");
    }
    Object document;
    try {
      document = StrictJson.parse(json);
    } catch (StrictJson.JsonException e) {
      throw new IllegalArgumentException("JWK Set is not strict JSON: " + e.getMessage());
    }
    return fromDocument(document);
  }

  /** From a parsed document (a Map of "keys" to a list of Maps). */
  static JwkSet fromDocument(Object document) {
    List<Map<?, ?>> entries = entries(document);
    List<VerificationKey> keys = new ArrayList<>();
    List<String> rejected = new ArrayList<>();
    for (Map<?, ?> entry : entries) {
      try {
        keys.add(VerificationKey.fromJwk(entry));
      } catch (IllegalArgumentException e) {
        Object kid = entry.get("kid");
        rejected.add((kid instanceof String ? kid : "(no kid)") + ": " + e.getMessage());
      }
    }
    return new JwkSet(keys, rejected);
  }

  private static List<Map<?, ?>> entries(Object document) {
    if (!(document instanceof Map<?, ?> set)) {
      throw new IllegalArgumentException("JWK Set must be a JSON object");
    }
    // RFC 7517 section 5: an object whose "keys" member is an array of JWKs.
    if (!(set.get("keys") instanceof List<?> list)) {
      throw new IllegalArgumentException("JWK Set needs a \"keys\" array of objects");
    }
    List<Map<?, ?>> entries = new ArrayList<>();
    Set<String> kids = new HashSet<>();
    for (Object item : list) {
      if (!(item instanceof Map<?, ?> jwk)) {
        throw new IllegalArgumentException("JWK Set needs a \"keys\" array of objects");
      }
      entries.add(jwk);
    }
    for (Map<?, ?> jwk : entries) {
      if (VerificationKey.hasPrivateMembers(jwk)) {
        throw new IllegalArgumentException("JWK Set contains private or symmetric key material");
      }
    }
    for (Map<?, ?> jwk : entries) {
      if (jwk.get("kid") instanceof String kid && !kids.add(kid)) {
        throw new IllegalArgumentException("duplicate kid in JWK Set"); // RFC 7517 section 4.5
      }
    }
    return entries;
  }

  /** The usable keys, in document order. */
  public List<VerificationKey> keys() {
    return keys;
  }

  /** For each entry {@link #parse} dropped: its kid and why. */
  public List<String> rejected() {
    return Collections.unmodifiableList(rejected);
  }

  /**
   * The key named {@code kid}.
   *
   * @param kid a key id
   * @return the key, or {@code null}
   */
  public VerificationKey get(String kid) {
    return kid == null ? null : byKid.get(kid);
  }

  /** The number of usable keys. */
  public int size() {
    return keys.size();
  }

  boolean hasKeyWithKid() {
    return !byKid.isEmpty();
  }

  @Override
  public String toString() {
    return "JwkSet(kids=" + new java.util.TreeSet<>(byKid.keySet()) + ")";
  }
}
