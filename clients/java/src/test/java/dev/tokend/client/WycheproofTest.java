package dev.tokend.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.nimbusds.jose.util.JSONObjectUtils;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Project Wycheproof JOSE vectors (read from ../shared/wycheproof/testvectors_v1 beside the
 * repository, or $TOKEND_WYCHEPROOF_DIR; never copied in) through the signature-only layer,
 * {@link Jws#verifyCompact}, with every supported algorithm allowed. "valid" must verify,
 * "invalid" must be refused with an InvalidTokenException, and the deliberate deviations in
 * conformance/wycheproof-deviations.json must be refused; a stale deviation fails. The same
 * semantics as tests/clients/python/jose/test_wycheproof.py. A missing directory fails the run.
 */
class WycheproofTest {

  private static final Map<String, String> FILES = Map.of(
      "jws", "json_web_signature_test.json",
      "jwk", "json_web_key_test.json",
      "crypto", "json_web_crypto_test.json");
  /** json_web_crypto_test.json holds JWE groups (jwe_aes, jwe_ec) that are not JWS. */
  private static final int EXPECTED_JWE_SKIPS = 34;
  private static final Set<String> PRIVATE_MEMBERS =
      Set.of("d", "p", "q", "dp", "dq", "qi", "k", "oth");
  /** Flags whose vectors must fail at a specific layer, not by an incidental earlier check. */
  private static final Map<String, Set<String>> REASONS_BY_FLAG = Map.of(
      "ModifiedPadding", Set.of("BAD_SIGNATURE"),
      "ModifiedSignature", Set.of("BAD_SIGNATURE"),
      "WrongPrimitive", Set.of("BAD_SIGNATURE", "DISALLOWED_ALGORITHM"),
      "AlgIsNone", Set.of("DISALLOWED_ALGORITHM"),
      "JsonSerialization", Set.of("MALFORMED"));

  record Vector(String file, long tcId, String comment, List<String> flags, String result,
      Object jws, Map<String, Object> publicJwks) {
    String key() {
      return file + ":" + tcId;
    }
  }

  private static int jweSkipped;

  @SuppressWarnings("unchecked")
  static List<Vector> collect() throws Exception {
    List<Vector> vectors = new ArrayList<>();
    int skipped = 0;
    for (String fileName : List.of(FILES.get("jws"), FILES.get("jwk"), FILES.get("crypto"))) {
      Map<String, Object> data = RepoFiles.readJson(RepoFiles.wycheproofDir().resolve(fileName));
      for (Object g : (List<Object>) data.get("testGroups")) {
        Map<String, Object> group = (Map<String, Object>) g;
        List<Object> tests = (List<Object>) group.get("tests");
        if (fileName.equals(FILES.get("crypto"))
            && !String.valueOf(group.getOrDefault("comment", "")).startsWith("jws_")) {
          skipped += tests.size();
          continue;
        }
        Map<String, Object> keys = publicJwks(group);
        for (Object t : tests) {
          Map<String, Object> test = (Map<String, Object>) t;
          vectors.add(new Vector(fileName, ((Number) test.get("tcId")).longValue(),
              String.valueOf(test.getOrDefault("comment", "")),
              (List<String>) test.getOrDefault("flags", List.of()),
              (String) test.get("result"), test.get("jws"), keys));
        }
      }
    }
    jweSkipped = skipped;
    return vectors;
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> asSet(Map<String, Object> jwkOrSet) {
    return jwkOrSet.containsKey("keys") ? jwkOrSet : Map.of("keys", List.of(jwkOrSet));
  }

  /** The group's public key set, derived from "private" when there is none. */
  @SuppressWarnings("unchecked")
  private static Map<String, Object> publicJwks(Map<String, Object> group) {
    if (group.containsKey("public")) {
      return asSet((Map<String, Object>) group.get("public"));
    }
    List<Object> keys = new ArrayList<>();
    for (Object k : (List<Object>) asSet((Map<String, Object>) group.get("private")).get("keys")) {
      Map<String, Object> jwk = new LinkedHashMap<>((Map<String, Object>) k);
      jwk.keySet().removeAll(PRIVATE_MEMBERS);
      keys.add(jwk);
    }
    return Map.of("keys", keys);
  }

  @SuppressWarnings("unchecked")
  static Map<String, String> deviations() throws Exception {
    Path file = RepoFiles.repoRoot().resolve("conformance/wycheproof-deviations.json");
    Map<String, String> deviations = new HashMap<>();
    List<Object> entries = (List<Object>) RepoFiles.readJson(file).get("deviations");
    for (Object e : entries) {
      Map<String, Object> entry = (Map<String, Object>) e;
      String key = entry.get("file") + ":" + ((Number) entry.get("tcId")).longValue();
      assertTrue(deviations.put(key, (String) entry.get("reason")) == null, "duplicate " + key);
    }
    return deviations;
  }

  /** "accepted", or why the vector was refused ("REASON: message"). */
  static String outcome(Vector vector) {
    JwkSet keys;
    try {
      keys = JwkSet.parse(JSONObjectUtils.toJSONString(vector.publicJwks()));
    } catch (IllegalArgumentException e) {
      return "key set refused: " + e.getMessage();
    }
    String token = vector.jws() instanceof String text ? text
        : JSONObjectUtils.toJSONString(castMap(vector.jws()));
    try {
      Jws.verifyCompact(token, keys, Jws.SUPPORTED_ALGORITHMS);
    } catch (InvalidTokenException e) {
      return e.reason().name().substring("REASON_".length()) + ": " + e.getMessage();
    }
    return "accepted";
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> castMap(Object value) {
    return (Map<String, Object>) value;
  }

  @Test
  void everyJwsVectorIsCollected() throws Exception {
    List<Vector> vectors = collect();
    long total = 0;
    for (String name : FILES.values()) {
      Path path = RepoFiles.wycheproofDir().resolve(name);
      assertTrue(Files.isRegularFile(path), "Wycheproof vectors missing: " + path);
      total += ((Number) RepoFiles.readJson(path).get("numberOfTests")).longValue();
    }
    assertEquals(EXPECTED_JWE_SKIPS, jweSkipped);
    assertEquals(total - EXPECTED_JWE_SKIPS, vectors.size());
    Set<String> keys = new HashSet<>();
    vectors.forEach(v -> assertTrue(keys.add(v.key()), "duplicate " + v.key()));
  }

  @Test
  void deviationsNameRealValidVectors() throws Exception {
    Set<String> valid = new HashSet<>();
    for (Vector v : collect()) {
      if (v.result().equals("valid")) {
        valid.add(v.key());
      }
    }
    for (String key : deviations().keySet()) {
      assertTrue(valid.contains(key), "stale deviation " + key);
    }
  }

  @TestFactory
  Stream<DynamicTest> everyVector() throws Exception {
    Map<String, String> deviations = deviations();
    List<Vector> vectors = collect();
    assertTrue(vectors.size() > 100, "too few Wycheproof vectors: " + vectors.size());
    return vectors.stream().map(v -> DynamicTest.dynamicTest(v.key(), () -> check(v, deviations)));
  }

  private static void check(Vector vector, Map<String, String> deviations) {
    String result = outcome(vector);
    String deviation = deviations.get(vector.key());
    if (vector.result().equals("valid") && deviation == null) {
      assertEquals("accepted", result, vector.comment());
      return;
    }
    // "invalid" vectors and the documented deviations must both be refused.
    assertNotEquals("accepted", result,
        vector.comment() + " (" + (deviation != null ? deviation : vector.result()) + ")");
    for (String flag : vector.flags()) {
      Set<String> expected = REASONS_BY_FLAG.get(flag);
      if (expected != null) {
        assertTrue(expected.contains(result.split(":")[0]), flag + ": " + result);
      }
    }
  }
}
