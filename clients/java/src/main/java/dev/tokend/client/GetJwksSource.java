package dev.tokend.client;

import com.nimbusds.jose.KeySourceException;
import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.source.JWKSetCacheRefreshEvaluator;
import com.nimbusds.jose.jwk.source.JWKSetParseException;
import com.nimbusds.jose.jwk.source.JWKSetSource;
import com.nimbusds.jose.jwk.source.JWKSetUnavailableException;
import com.nimbusds.jose.proc.SecurityContext;
import dev.tokend.v1.GetJwksRequest;
import dev.tokend.v1.TokenServiceGrpc.TokenServiceBlockingStub;
import io.grpc.StatusRuntimeException;
import java.text.ParseException;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * Fetches the key set with the GetJwks RPC on every call; {@link TokendJwks#fromService}
 * wraps it in Nimbus's caching and rate limiting.
 */
final class GetJwksSource implements JWKSetSource<SecurityContext> {

  private final TokenServiceBlockingStub stub;
  private final Duration timeout;

  GetJwksSource(TokenServiceBlockingStub stub, Duration timeout) {
    this.stub = stub;
    this.timeout = timeout;
  }

  @Override
  public JWKSet getJWKSet(
      JWKSetCacheRefreshEvaluator refreshEvaluator, long currentTime, SecurityContext context)
      throws KeySourceException {
    String json;
    try {
      json =
          stub.withDeadlineAfter(timeout.toMillis(), TimeUnit.MILLISECONDS)
              .getJwks(GetJwksRequest.getDefaultInstance())
              .getJwksJson();
    } catch (StatusRuntimeException e) {
      throw new JWKSetUnavailableException("GetJwks failed: " + e.getStatus().getCode(), e);
    }
    try {
      return JWKSet.parse(json);
    } catch (ParseException e) {
      throw new JWKSetParseException("GetJwks returned an invalid JWK Set", e);
    }
  }

  /** The stub's channel belongs to the caller, who closes it. */
  @Override
  public void close() {}
}
