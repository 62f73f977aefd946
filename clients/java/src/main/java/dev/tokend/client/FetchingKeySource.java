package dev.tokend.client;

import dev.tokend.v1.GetJwksRequest;
import dev.tokend.v1.TokenServiceGrpc.TokenServiceBlockingStub;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Keys fetched as JWK Set JSON (the same policy as the Python client's KeySource): every
 * {@code refreshInterval} (±10 % jitter) in a daemon thread, and when a token names a {@code
 * kid} the current set lacks, unless a fetch ended less than {@code minRefetchInterval} ago. A
 * fetch that fails or yields no usable key keeps the last good set; verification never waits
 * for the network while the kid is known. Thread-safe; {@link #close} stops the thread.
 */
public class FetchingKeySource implements KeySource, AutoCloseable {

  /** Fetches one JWK Set document. */
  @FunctionalInterface
  public interface Fetch {
    /**
     * Fetches the document.
     *
     * @return the JWK Set as JSON text
     * @throws Exception when it cannot be fetched
     */
    String fetch() throws Exception;
  }

  /** The default period of the background refresh: a withdrawn key is dropped within it. */
  public static final Duration DEFAULT_REFRESH_INTERVAL = Duration.ofMinutes(5);

  /** The default rate limit of fetches caused by unknown kids. */
  public static final Duration DEFAULT_MIN_REFETCH_INTERVAL = Duration.ofSeconds(5);

  private static final Duration FETCH_TIMEOUT = Duration.ofSeconds(5);

  private final Fetch fetch;
  private final Duration refreshInterval;
  private final long minRefetchNanos;
  private final ReentrantLock lock = new ReentrantLock();
  private volatile JwkSet keys;
  private long nextRefetchAt = Long.MIN_VALUE;
  private volatile boolean closed;
  private Thread refresher;
  private volatile int fetchCount;

  /**
   * A source on {@code fetch}.
   *
   * @param fetch returns the JWK Set JSON
   * @param refreshInterval the period of the background refresh (the max age of the keys), or
   *     {@code null} for none
   * @param minRefetchInterval the least time between fetches caused by unknown kids
   */
  public FetchingKeySource(Fetch fetch, Duration refreshInterval, Duration minRefetchInterval) {
    this.fetch = Objects.requireNonNull(fetch, "fetch");
    if (refreshInterval != null && (refreshInterval.isNegative() || refreshInterval.isZero())) {
      throw new IllegalArgumentException("refreshInterval must be positive");
    }
    if (minRefetchInterval.isNegative()) {
      throw new IllegalArgumentException("minRefetchInterval must not be negative");
    }
    this.refreshInterval = refreshInterval;
    this.minRefetchNanos = minRefetchInterval.toNanos();
  }

  /**
   * The key set served over HTTP(S), e.g. {@code http://127.0.0.1:8080/.well-known/jwks.json}.
   *
   * @param jwksUrl the JWKS endpoint
   * @return a source with the default intervals
   */
  public static FetchingKeySource fromUrl(URL jwksUrl) {
    return fromUrl(jwksUrl, DEFAULT_REFRESH_INTERVAL, DEFAULT_MIN_REFETCH_INTERVAL);
  }

  /**
   * The key set served over HTTP(S), with chosen intervals.
   *
   * @param jwksUrl the JWKS endpoint
   * @param refreshInterval the period of the background refresh, or {@code null} for none
   * @param minRefetchInterval the least time between fetches caused by unknown kids
   * @return the source
   */
  public static FetchingKeySource fromUrl(
      URL jwksUrl, Duration refreshInterval, Duration minRefetchInterval) {
    URI uri;
    try {
      uri = jwksUrl.toURI();
    } catch (java.net.URISyntaxException e) {
      throw new IllegalArgumentException("invalid JWKS URL", e);
    }
    // Keys fetched in the clear could be replaced on the way: https, or http to loopback only.
    boolean https = "https".equals(uri.getScheme()) && uri.getHost() != null;
    if (!https && !("http".equals(uri.getScheme()) && isLoopbackHost(uri.getHost()))) {
      throw new IllegalArgumentException("the JWKS URL must be https (or http to loopback)");
    }
    HttpClient http = HttpClient.newBuilder().connectTimeout(FETCH_TIMEOUT).build();
    return new FetchingKeySource(() -> getUrl(http, uri), refreshInterval, minRefetchInterval);
  }

  /** localhost and loopback IP literals (127.0.0.0/8, ::1), without a DNS lookup. */
  static boolean isLoopbackHost(String host) {
    if (host == null || host.isEmpty()) {
      return false;
    }
    String bare = host.startsWith("[") && host.endsWith("]")
        ? host.substring(1, host.length() - 1) : host;
    if (bare.equalsIgnoreCase("localhost")) {
      return true;
    }
    if (!bare.matches("[0-9.]+") && !bare.contains(":")) {
      return false; // a name: DNS could point it anywhere
    }
    try {
      return java.net.InetAddress.getByName(bare).isLoopbackAddress(); // a literal: no lookup
    } catch (java.net.UnknownHostException e) {
      return false;
    }
  }

  private static String getUrl(HttpClient http, URI uri) throws IOException, InterruptedException {
    HttpRequest request = HttpRequest.newBuilder(uri).timeout(FETCH_TIMEOUT).GET().build();
    HttpResponse<InputStream> response = http.send(request, HttpResponse.BodyHandlers.ofInputStream());
    try (InputStream body = response.body()) {
      if (response.statusCode() != 200) {
        throw new IOException("JWKS endpoint answered HTTP " + response.statusCode());
      }
      byte[] bytes = body.readNBytes(JwkSet.MAX_JWKS_BYTES + 1);
      if (bytes.length > JwkSet.MAX_JWKS_BYTES) {
        throw new IOException("JWK Set document is too large");
      }
      return new String(bytes, java.nio.charset.StandardCharsets.UTF_8);
    }
  }

  /**
   * The key set from tokend's GetJwks RPC (5 s deadline per call).
   *
   * @param stub a stub on a channel that stays open while the source is used
   * @return a source with the default intervals
   */
  public static FetchingKeySource fromService(TokenServiceBlockingStub stub) {
    Objects.requireNonNull(stub, "stub");
    return new FetchingKeySource(() -> stub
        .withDeadlineAfter(FETCH_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)
        .getJwks(GetJwksRequest.getDefaultInstance()).getJwksJson(),
        DEFAULT_REFRESH_INTERVAL, DEFAULT_MIN_REFETCH_INTERVAL);
  }

  /** How many fetches were attempted (for monitoring). */
  public int fetchCount() {
    return fetchCount;
  }

  @Override
  public JwkSet keys() {
    JwkSet current = keys;
    if (current != null) {
      return current; // the hot path: no lock, no I/O
    }
    lock.lock();
    try {
      if (keys == null) {
        loadLocked();
        startRefresher();
      }
      return keys;
    } finally {
      lock.unlock();
    }
  }

  /**
   * Fetches now, whatever the rate limit.
   *
   * @return the new key set
   * @throws KeySetUnavailableException when the fetch fails (the current set stays)
   */
  public JwkSet refresh() {
    lock.lock();
    try {
      return loadLocked();
    } finally {
      lock.unlock();
    }
  }

  @Override
  public JwkSet refetchForUnknownKey(JwkSet seen) {
    lock.lock();
    try {
      if (keys != seen) {
        return keys; // another thread fetched meanwhile
      }
      if (System.nanoTime() - nextRefetchAt < 0) {
        return null;
      }
      try {
        return loadLocked();
      } catch (KeySetUnavailableException e) {
        return null;
      }
    } finally {
      lock.unlock();
    }
  }

  /** Replaces the key set (used by {@link LiveSource} when tokend pushes one). */
  void replace(JwkSet newer) {
    lock.lock();
    try {
      keys = newer;
    } finally {
      lock.unlock();
    }
  }

  /** Stops the periodic refresh; the last keys stay usable. */
  @Override
  public void close() {
    closed = true;
    Thread thread = refresher;
    if (thread != null) {
      thread.interrupt();
    }
  }

  boolean isClosed() {
    return closed;
  }

  JwkSet currentOrNull() {
    return keys;
  }

  private JwkSet loadLocked() {
    fetchCount++;
    try {
      JwkSet fetched = usable(fetch.fetch());
      keys = fetched;
      return fetched;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new KeySetUnavailableException("fetching the JWK Set was interrupted", e);
    } catch (Exception e) {
      throw new KeySetUnavailableException("fetching the JWK Set failed: " + e.getMessage(), e);
    } finally {
      // From the end of the attempt, failed ones included: a failing publisher must not turn
      // unknown kids into back-to-back fetches.
      nextRefetchAt = System.nanoTime() + minRefetchNanos;
    }
  }

  static JwkSet usable(String json) {
    JwkSet parsed = JwkSet.parse(json);
    if (!parsed.hasKeyWithKid()) {
      // An empty set would fail every token; keep the last good one instead.
      throw new IllegalArgumentException("the JWK Set has no usable key with a kid");
    }
    return parsed;
  }

  /** Starts the background work after the first fetch; LiveSource follows streams instead. */
  void startRefresher() {
    if (refreshInterval == null || refresher != null || closed) {
      return;
    }
    refresher = new Thread(this::refreshPeriodically, "tokend-key-refresh");
    refresher.setDaemon(true);
    refresher.start();
  }

  private void refreshPeriodically() {
    while (!closed) {
      long base = refreshInterval.toMillis();
      long jittered = (long) (base * ThreadLocalRandom.current().nextDouble(0.9, 1.1));
      try {
        Thread.sleep(Math.max(1, jittered));
      } catch (InterruptedException e) {
        return;
      }
      if (closed) {
        return;
      }
      try {
        refresh();
      } catch (KeySetUnavailableException e) {
        System.getLogger(FetchingKeySource.class.getName()).log(System.Logger.Level.WARNING,
            "tokend key refresh failed, keeping the current keys: {0}", e.getMessage());
      }
    }
  }
}
