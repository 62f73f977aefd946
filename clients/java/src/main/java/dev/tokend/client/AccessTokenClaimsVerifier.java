package dev.tokend.client;

import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jwt.JWTClaimNames;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.proc.BadJWTException;
import com.nimbusds.jwt.proc.DefaultJWTClaimsVerifier;
import com.nimbusds.jwt.proc.ExpiredJWTException;
import dev.tokend.v1.Reason;
import java.time.Duration;
import java.util.Collections;
import java.util.Date;
import java.util.Objects;
import java.util.Set;

/**
 * The claim rules of RFC 9068 section 4 on top of Nimbus's {@link DefaultJWTClaimsVerifier}
 * (exact issuer, required audience, required claims, exp/nbf with leeway), plus what that
 * class leaves out: {@code iat} in the future, and non-empty {@code sub} and {@code jti}.
 * Every refusal is a {@link Rejection} carrying its {@link Reason}.
 */
final class AccessTokenClaimsVerifier extends DefaultJWTClaimsVerifier<SecurityContext> {

  /** The claims RFC 9068 section 2.2 makes mandatory. */
  static final Set<String> REQUIRED_CLAIMS =
      Set.of(
          JWTClaimNames.EXPIRATION_TIME,
          JWTClaimNames.ISSUED_AT,
          JWTClaimNames.ISSUER,
          JWTClaimNames.SUBJECT,
          JWTClaimNames.AUDIENCE,
          JWTClaimNames.JWT_ID);

  private final String issuer;

  AccessTokenClaimsVerifier(String issuer, Set<String> audiences, Duration leeway) {
    super(audiences, new JWTClaimsSet.Builder().issuer(issuer).build(), REQUIRED_CLAIMS, null);
    this.issuer = issuer;
    setMaxClockSkew(Math.toIntExact(leeway.toSeconds()));
  }

  @Override
  public void verify(JWTClaimsSet claims, SecurityContext context) throws BadJWTException {
    try {
      super.verify(claims, context);
    } catch (ExpiredJWTException e) {
      throw new Rejection(Reason.REASON_EXPIRED, e.getMessage());
    } catch (BadJWTException e) {
      throw new Rejection(reasonFor(claims), e.getMessage());
    }
    checkIssuedAt(claims);
    checkIdentifiers(claims);
  }

  /**
   * Which of the parent's checks failed. It reports them only as messages, so the checks are
   * repeated here, in a fixed order, rather than the messages parsed.
   */
  private Reason reasonFor(JWTClaimsSet claims) {
    if (!claims.getClaims().keySet().containsAll(REQUIRED_CLAIMS)) {
      return Reason.REASON_MISSING_CLAIM;
    }
    if (!Objects.equals(issuer, claims.getClaim(JWTClaimNames.ISSUER))) {
      return Reason.REASON_WRONG_ISSUER;
    }
    if (Collections.disjoint(claims.getAudience(), getAcceptedAudienceValues())) {
      return Reason.REASON_WRONG_AUDIENCE;
    }
    // What remains of the parent's checks (exp has its own exception) is nbf.
    return claims.getNotBeforeTime() != null
        ? Reason.REASON_NOT_YET_VALID
        : Reason.REASON_MALFORMED;
  }

  /** RFC 7519 section 4.1.6: a token issued in the future means a bad clock or a forgery. */
  private void checkIssuedAt(JWTClaimsSet claims) throws Rejection {
    Date latest = new Date(currentTime().getTime() + getMaxClockSkew() * 1000L);
    if (claims.getIssueTime().after(latest)) {
      throw new Rejection(Reason.REASON_ISSUED_IN_FUTURE, "JWT iat is in the future");
    }
  }

  /** RFC 7519 sections 4.1.2 and 4.1.7; the parser already checked that both are strings. */
  private static void checkIdentifiers(JWTClaimsSet claims) throws Rejection {
    if (claims.getSubject().isEmpty() || claims.getJWTID().isEmpty()) {
      throw new Rejection(Reason.REASON_MALFORMED, "JWT sub and jti must not be empty");
    }
  }
}
