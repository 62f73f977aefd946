package dev.tokend.client;

import com.nimbusds.jose.KeySourceException;
import com.nimbusds.jose.jwk.JWK;
import com.nimbusds.jose.jwk.JWKMatcher;
import com.nimbusds.jose.jwk.JWKSelector;
import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.jwk.source.RateLimitReachedException;
import com.nimbusds.jose.proc.SecurityContext;
import java.io.Closeable;
import java.io.IOException;
import java.util.List;

/**
 * A Nimbus {@link JWKSource} (e.g. one of {@link TokendJwks}) as a {@link KeySource}: Nimbus
 * caches and rate-limits the fetches; the keys it returns are read again under this client's
 * strict JWK policy ({@link JwkSet}), once per distinct list.
 */
final class NimbusKeySource implements KeySource, Closeable {

  private static final JWKSelector ALL = new JWKSelector(new JWKMatcher.Builder().build());

  private final JWKSource<SecurityContext> source;
  private volatile Snapshot last = new Snapshot(null, null);

  private record Snapshot(List<JWK> jwks, JwkSet keys) {}

  NimbusKeySource(JWKSource<SecurityContext> source) {
    this.source = source;
  }

  @Override
  public JwkSet keys() {
    try {
      return convert(source.get(ALL, null));
    } catch (KeySourceException e) {
      throw new KeySetUnavailableException("cannot obtain tokend's keys: " + e.getMessage(), e);
    }
  }

  @Override
  public JwkSet refetchForUnknownKey(JwkSet seen) {
    // Asking Nimbus for a key it lacks makes its cache refresh (rate-limited).
    try {
      source.get(new JWKSelector(new JWKMatcher.Builder().keyID("\u0000unknown").build()), null);
    } catch (RateLimitReachedException e) {
      return null;
    } catch (KeySourceException e) {
      return null;
    }
    JwkSet now = keys();
    return now == seen ? null : now;
  }

  private JwkSet convert(List<JWK> jwks) {
    Snapshot snapshot = last;
    if (jwks.equals(snapshot.jwks())) {
      return snapshot.keys();
    }
    JwkSet keys;
    try {
      keys = JwkSet.parse(new JWKSet(jwks).toString(true));
    } catch (IllegalArgumentException e) {
      // A set refused whole (duplicate kids...): no verdict on any token.
      throw new KeySetUnavailableException("tokend's key set is unusable: " + e.getMessage(), e);
    }
    last = new Snapshot(List.copyOf(jwks), keys);
    return keys;
  }

  @Override
  public void close() throws IOException {
    if (source instanceof Closeable closeable) {
      closeable.close();
    }
  }
}
