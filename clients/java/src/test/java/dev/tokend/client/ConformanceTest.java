package dev.tokend.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.nimbusds.jose.util.JSONObjectUtils;
import dev.tokend.v1.Reason;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * The shared conformance vectors (conformance/vectors/*.json and conformance/vectors-next/*.json,
 * see /conformance and docs/verifier-contract.md): every case, verified by a {@link
 * TokendVerifier} built from the case's key set and options with a clock fixed at its {@code
 * now}, gives the expected result. A vectors-next case may name the presenter's certificate
 * ({@code presenter_x5t_s256}, section 9) and a {@code delegation} option (section A). Any
 * exception other than InvalidTokenException fails the case.
 */
class ConformanceTest {

  private static Path vectorDir() {
    return RepoFiles.repoRoot().resolve("conformance/vectors");
  }

  private static Path nextVectorDir() {
    return RepoFiles.repoRoot().resolve("conformance/vectors-next");
  }

  private static List<Map<String, Object>> cases() throws Exception {
    List<Map<String, Object>> all = new ArrayList<>(cases(vectorDir()));
    all.addAll(cases(nextVectorDir()));
    return all;
  }

  @SuppressWarnings("unchecked")
  private static List<Map<String, Object>> cases(Path dir) throws Exception {
    List<Map<String, Object>> all = new ArrayList<>();
    try (Stream<Path> files = Files.list(dir)) {
      for (Path file : files.filter(p -> p.toString().endsWith(".json")).sorted().toList()) {
        for (Object item : (List<Object>) RepoFiles.readJson(file).get("cases")) {
          all.add((Map<String, Object>) item);
        }
      }
    }
    return all;
  }

  @Test
  void theVectorsArePresent() throws Exception {
    List<Map<String, Object>> cases = cases();
    assertTrue(cases.size() > 100, "too few conformance cases: " + cases.size());
    // Both act.json and cnf.json are read (a runner that silently skipped them would pass).
    List<Map<String, Object>> next = cases(nextVectorDir());
    assertTrue(next.stream().anyMatch(c -> c.containsKey("presenter_x5t_s256")), "no cnf cases");
    assertTrue(next.stream().anyMatch(c -> ((Map<?, ?>) c.get("options"))
        .containsKey("delegation")), "no delegation cases");
    Set<Object> ids = new HashSet<>();
    for (Map<String, Object> c : cases) {
      assertTrue(ids.add(c.get("id")), "duplicate id " + c.get("id"));
    }
  }

  @TestFactory
  Stream<DynamicTest> everyCase() throws Exception {
    List<Map<String, Object>> cases = cases();
    if (cases.isEmpty()) {
      fail("no conformance cases in " + vectorDir());
    }
    return cases.stream().map(c -> DynamicTest.dynamicTest((String) c.get("id"), () -> run(c)));
  }

  @SuppressWarnings("unchecked")
  static void run(Map<String, Object> c) throws Exception {
    Map<String, Object> expect = (Map<String, Object>) c.get("expect");
    TokendVerifier verifier = verifierFor(c);
    List<String> scopes = (List<String>) c.getOrDefault("required_scopes", List.of());
    String rule = c.get("id") + " (" + c.get("rule") + ")";
    VerifyOptions options = VerifyOptions.defaults().requiredScopes(scopes)
        .presenterThumbprint((String) c.get("presenter_x5t_s256"));
    try {
      Map<String, Object> claims;
      if (c.containsKey("token_b64")) {
        byte[] raw = Base64.getDecoder().decode((String) c.get("token_b64"));
        claims = verifier.verify(raw, options).getClaims();
      } else {
        claims = verifier.verifyClaims((String) c.get("token"), options);
      }
      assertTrue((Boolean) expect.get("valid"), rule + ": accepted, expected " + expect);
      assertEquals(expect.get("sub"), claims.get("sub"), rule);
    } catch (InvalidTokenException e) {
      assertFalse((Boolean) expect.get("valid"), rule + ": refused (" + e.getMessage() + ")");
      assertEquals(Reason.valueOf("REASON_" + expect.get("reason")), e.reason(),
          rule + ": " + e.getMessage());
    }
  }

  /** Unix seconds, possibly fractional, as an Instant (to the nanosecond below). */
  static Instant instant(Number seconds) {
    java.math.BigDecimal exact = seconds instanceof Double d ? new java.math.BigDecimal(d)
        : new java.math.BigDecimal(seconds.toString());
    java.math.BigDecimal whole = exact.setScale(0, java.math.RoundingMode.FLOOR);
    long nanos = exact.subtract(whole).movePointRight(9)
        .setScale(0, java.math.RoundingMode.FLOOR).longValueExact();
    return Instant.ofEpochSecond(whole.longValueExact(), nanos);
  }

  @SuppressWarnings("unchecked")
  static TokendVerifier verifierFor(Map<String, Object> c) {
    Map<String, Object> options = (Map<String, Object>) c.get("options");
    Instant now = instant((Number) c.get("now"));
    Object maxLifetime = options.get("max_lifetime");
    return TokendVerifier.builder()
        .issuer((String) options.get("issuer"))
        .audiences((List<String>) options.get("audience"))
        .allowedAlgorithms((List<String>) options.get("algorithms"))
        .leeway(Duration.ofSeconds(((Number) options.get("leeway")).longValue()))
        .maxLifetime(maxLifetime == null ? null
            : Duration.ofSeconds(((Number) maxLifetime).longValue()))
        .maxTokenBytes(((Number) options.get("max_token_bytes")).intValue())
        .requiredClaims((List<String>) options.get("required_claims"))
        .requiredTyp((String) options.get("required_typ"))
        .clock(Clock.fixed(now, ZoneOffset.UTC))
        .delegation(TokendVerifier.Delegation.valueOf(((String) options
            .getOrDefault("delegation", "any")).toUpperCase(java.util.Locale.ROOT)))
        .jwks(JwkSet.parse(JSONObjectUtils.toJSONString((Map<String, Object>) c.get("jwks"))))
        .build();
  }
}
