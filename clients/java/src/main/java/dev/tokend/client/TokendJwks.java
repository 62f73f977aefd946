package dev.tokend.client;

import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.source.ImmutableJWKSet;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.jwk.source.JWKSourceBuilder;
import com.nimbusds.jose.proc.SecurityContext;
import dev.tokend.v1.TokenServiceGrpc.TokenServiceBlockingStub;
import java.net.URL;
import java.text.ParseException;
import java.time.Duration;

/**
 * Nimbus key sources for tokend's public keys, kept from earlier versions; {@link
 * TokendVerifier.Builder#keySource(JWKSource)} reads their keys under the strict {@link
 * JwkSet} policy. New code: {@link FetchingKeySource} or {@link LiveSource}.
 *
 * <p>The remote sources cache the key set for 5 minutes and refresh it ahead of expiry; a
 * token whose {@code kid} is not in the cache triggers a refresh (how a key rotation is
 * picked up), rate-limited to two fetches per 30 seconds so that tokens with made-up key
 * ids cannot flood tokend.
 */
public final class TokendJwks {

  private static final Duration GET_JWKS_TIMEOUT = Duration.ofSeconds(5);

  private TokendJwks() {}

  /**
   * The key set served over HTTP(S), e.g. {@code http://127.0.0.1:8080/.well-known/jwks.json}.
   *
   * @param jwksUrl the JWKS endpoint
   * @return a cached, rate-limited key source
   */
  public static JWKSource<SecurityContext> fromUrl(URL jwksUrl) {
    return JWKSourceBuilder.create(jwksUrl).build();
  }

  /**
   * The key set from tokend's GetJwks RPC (5 s deadline per call), for callers that already
   * hold a channel to tokend and have no HTTP access to it.
   *
   * @param stub a stub on a channel that stays open while the verifier is used
   * @return a cached, rate-limited key source
   */
  public static JWKSource<SecurityContext> fromService(TokenServiceBlockingStub stub) {
    return JWKSourceBuilder.create(new GetJwksSource(stub, GET_JWKS_TIMEOUT)).build();
  }

  /**
   * A fixed key set (no rotation), e.g. from configuration.
   *
   * @param jwksJson an RFC 7517 JWK Set as JSON
   * @return a key source that never changes
   * @throws ParseException when {@code jwksJson} is not a JWK Set
   */
  public static JWKSource<SecurityContext> fromJson(String jwksJson) throws ParseException {
    return new ImmutableJWKSet<>(JWKSet.parse(jwksJson));
  }
}
