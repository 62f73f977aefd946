package dev.tokend.client;

import static dev.tokend.client.TestTokens.AUDIENCE;
import static dev.tokend.client.TestTokens.ISSUER;
import static dev.tokend.client.TestTokens.validClaims;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.nimbusds.jose.jwk.source.ImmutableJWKSet;
import dev.tokend.v1.Reason;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/**
 * The act claim (RFC 8693 section 4.1, contract section A) and cnf (RFC 8705 section 3,
 * contract section 9) through the public API: the builder's delegation option and its per-call
 * override, the actor chain, the presenter checked on every call. The vectors in
 * conformance/vectors-next cover each rule; this covers the Java surface around them.
 */
class DelegationTest {

  private static TestTokens tokens;
  private static String delegated;
  private static String direct;

  @BeforeAll
  static void setUp() throws Exception {
    tokens = TestTokens.shared();
    delegated = tokens.mint("ES256", validClaims().claim("act",
        Map.of("sub", "payments", "act", Map.of("sub", "orders"))).build());
    direct = tokens.mint("ES256");
  }

  private static TokendVerifier verifier(TokendVerifier.Delegation delegation) throws Exception {
    return TokendVerifier.builder().issuer(ISSUER).audience(AUDIENCE).delegation(delegation)
        .keySource(new ImmutableJWKSet<>(tokens.publicKeys())).build();
  }

  private static void assertReason(Reason reason, Executable call) {
    assertEquals(reason, assertThrows(InvalidTokenException.class, call).reason());
  }

  @Test
  void actorsOutermostFirst() throws Exception {
    TokendVerifier any = verifier(TokendVerifier.Delegation.ANY);
    assertEquals(List.of("payments", "orders"), TokendVerifier.actors(any.verify(delegated)));
    assertEquals(List.of(), TokendVerifier.actors(any.verifyClaims(direct, List.of())));
    assertThrows(IllegalArgumentException.class,
        () -> TokendVerifier.actors(Map.of("act", "orders")));
  }

  @Test
  void theBuilderOptionAndItsPerCallOverride() throws Exception {
    TokendVerifier required = verifier(TokendVerifier.Delegation.REQUIRED);
    required.verify(delegated);
    assertReason(Reason.REASON_DELEGATION, () -> required.verify(direct));
    required.verify(direct, VerifyOptions.defaults().delegation(TokendVerifier.Delegation.ANY));
    TokendVerifier refused = verifier(TokendVerifier.Delegation.REFUSED);
    refused.verify(direct);
    assertReason(Reason.REASON_DELEGATION, () -> refused.verify(delegated));
    assertReason(Reason.REASON_DELEGATION, () -> refused.verify(delegated, List.of()));
    assertThrows(NullPointerException.class, () -> TokendVerifier.builder().delegation(null));
  }

  @Test
  void aBoundTokenNeedsItsPresenterOnEveryCall() throws Exception {
    String x5t = "A".repeat(43);
    String bound = tokens.mint("ES256", validClaims().claim("cnf", Map.of("x5t#S256", x5t))
        .build());
    TokendVerifier any = verifier(TokendVerifier.Delegation.ANY);
    any.verify(bound, VerifyOptions.defaults().presenterThumbprint(x5t));
    // The old signatures name no presenter: a bound token is never a bearer token there.
    assertReason(Reason.REASON_CERTIFICATE_MISMATCH, () -> any.verify(bound));
    assertReason(Reason.REASON_CERTIFICATE_MISMATCH, () -> any.verify(bound, List.of()));
    assertReason(Reason.REASON_CERTIFICATE_MISMATCH,
        () -> any.verify(bound, VerifyOptions.defaults().presenterThumbprint("B".repeat(42) + "A")));
    any.verify(bound, VerifyOptions.defaults().presenterThumbprint(x5t));
    // A direct, unbound token ignores the presenter.
    any.verify(direct, VerifyOptions.defaults().presenterThumbprint("B".repeat(42) + "A"));
  }
}
