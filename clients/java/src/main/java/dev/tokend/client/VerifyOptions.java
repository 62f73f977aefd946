package dev.tokend.client;

import java.security.cert.X509Certificate;
import java.util.Collection;
import java.util.List;
import java.util.Objects;

/**
 * Per-call options of {@link TokendVerifier#verify(String, VerifyOptions)}: the required
 * scopes, the presenter's certificate for certificate-bound tokens (RFC 8705 section 3,
 * docs/verifier-contract.md section 9) and the delegation rule for this call (RFC 8693 section
 * 4.1, section A). Immutable: each method returns a copy.
 *
 * <pre>{@code
 * VerifyOptions options = VerifyOptions.defaults()
 *     .requiredScopes(List.of("payments:charge"))
 *     .presenterThumbprint(Binding.fromServerCall(call))   // null: none presented
 *     .delegation(TokendVerifier.Delegation.REQUIRED);
 * }</pre>
 */
public final class VerifyOptions {

  private static final VerifyOptions DEFAULTS = new VerifyOptions(List.of(), null, false, null);

  private final List<String> requiredScopes;
  private final String presenter; // x5t#S256, or null: no certificate presented
  private final boolean presenterSet;
  private final TokendVerifier.Delegation delegation; // null: the verifier's own

  private VerifyOptions(List<String> requiredScopes, String presenter, boolean presenterSet,
      TokendVerifier.Delegation delegation) {
    this.requiredScopes = requiredScopes;
    this.presenter = presenter;
    this.presenterSet = presenterSet;
    this.delegation = delegation;
  }

  /**
   * No required scope, no presenter, the verifier's delegation option.
   *
   * @return the default options
   */
  public static VerifyOptions defaults() {
    return DEFAULTS;
  }

  /**
   * Scope names that must all be in the token's {@code scope} claim.
   *
   * @param scopes non-empty names
   * @return a copy with these scopes
   */
  public VerifyOptions requiredScopes(Collection<String> scopes) {
    Objects.requireNonNull(scopes, "scopes");
    for (String scope : scopes) {
      if (scope == null || scope.isEmpty()) {
        throw new IllegalArgumentException("requiredScopes must contain only non-empty strings");
      }
    }
    return new VerifyOptions(List.copyOf(scopes), presenter, presenterSet, delegation);
  }

  /**
   * The presenter's certificate by its {@code x5t#S256} ({@link Binding#fromSslSession}, {@link
   * Binding#fromServerCall}, {@link Binding#fromXfcc} give it).
   *
   * @param x5tS256 43 base64url characters, or {@code null} when no certificate was presented
   * @return a copy naming this presenter
   * @throws IllegalArgumentException for a malformed thumbprint, or a presenter named twice
   */
  public VerifyOptions presenterThumbprint(String x5tS256) {
    return withPresenter(x5tS256 == null ? null : Binding.checkThumbprint(x5tS256));
  }

  /**
   * The presenter's certificate.
   *
   * @param certificate the client certificate, or {@code null} when none was presented
   * @return a copy naming this presenter
   * @throws IllegalArgumentException when a presenter is named twice
   */
  public VerifyOptions presenterCertificate(X509Certificate certificate) {
    return withPresenter(certificate == null ? null : Binding.thumbprint(certificate));
  }

  /**
   * The presenter's certificate as DER bytes (at most 16 KiB; they must parse).
   *
   * @param der the client certificate, or {@code null} when none was presented
   * @return a copy naming this presenter
   * @throws IllegalArgumentException for bytes that are not a DER certificate, or a presenter
   *     named twice
   */
  public VerifyOptions presenterCertificate(byte[] der) {
    return withPresenter(der == null ? null : Binding.thumbprint(der));
  }

  /**
   * Overrides the verifier's delegation option for this call.
   *
   * @param delegation ANY, REQUIRED or REFUSED
   * @return a copy with this option
   */
  public VerifyOptions delegation(TokendVerifier.Delegation delegation) {
    return new VerifyOptions(requiredScopes, presenter, presenterSet,
        Objects.requireNonNull(delegation, "delegation"));
  }

  List<String> scopes() {
    return requiredScopes;
  }

  String presenter() {
    return presenter;
  }

  TokendVerifier.Delegation delegationOr(TokendVerifier.Delegation fallback) {
    return delegation == null ? fallback : delegation;
  }

  private VerifyOptions withPresenter(String thumbprint) {
    // Like Python's presenter_certificate= and presenter_x5t_s256= together: ambiguous.
    if (presenterSet) {
      throw new IllegalArgumentException("name the presenter once: a certificate or a thumbprint");
    }
    return new VerifyOptions(requiredScopes, thumbprint, true, delegation);
  }
}
