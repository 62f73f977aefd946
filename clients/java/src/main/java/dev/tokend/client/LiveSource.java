package dev.tokend.client;

import com.google.protobuf.Timestamp;
import dev.tokend.v1.GetJwksRequest;
import dev.tokend.v1.JwksEvent;
import dev.tokend.v1.RevocationEvent;
import dev.tokend.v1.TokenServiceGrpc;
import dev.tokend.v1.WatchJwksRequest;
import dev.tokend.v1.WatchRevocationsRequest;
import io.grpc.Channel;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.lang.System.Logger.Level;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.time.Duration;
import java.time.Instant;
import java.util.Iterator;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.function.BiConsumer;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * tokend pushes its keys and revocations to a {@link TokendVerifier}: the Java twin of the
 * Python client's LiveSource. It follows two server streams over the caller's channel, each in
 * a daemon thread:
 *
 * <ul>
 *   <li>{@code WatchJwks}: the key set, replaced as soon as tokend publishes a new one;
 *   <li>{@code WatchRevocations}: every live revocation, then each new one. A verifier built
 *       on the source refuses revoked tokens ({@code REASON_REVOKED}): the {@code jti}, or any
 *       token of a revoked subject whose {@code iat} is at or before the revocation.
 * </ul>
 *
 * <p>A broken stream is reopened with exponential backoff and jitter, resuming from the last
 * sequence received, so no revocation is missed; one silent longer than {@code idleTimeout}
 * (tokend sends a keep-alive every 15 s) is reopened too. Keys older than {@code keyMaxAge}
 * are fetched again with GetJwks, and a token naming an unknown {@code kid} makes one
 * rate-limited GetJwks call. While tokend is unreachable the last known state stays in force
 * until the revocation feed has been lost for {@code maxStaleness}; then the {@link
 * StalePolicy} decides: {@code FAIL_CLOSED} (default) makes every verification throw {@link
 * KeySetUnavailableException}, {@code FAIL_OPEN} keeps verifying with what is known. The
 * {@code onStale} callback hears of each change between fresh and stale.
 *
 * <p>The first use (a verifier's first {@code verify}, or {@link #keys}) fetches the keys,
 * opens both streams and waits up to {@code readyTimeout} for the revocations in force, so a
 * verifier never starts out accepting a revoked token.
 */
public final class LiveSource implements KeySource, AutoCloseable {

  /** What verification does once the revocation feed has been lost for too long. */
  public enum StalePolicy {
    /** Refuse to decide: every verify throws KeySetUnavailableException (the default). */
    FAIL_CLOSED,
    /** Keep verifying with the keys and revocations last received. */
    FAIL_OPEN
  }

  private static final System.Logger LOG = System.getLogger(LiveSource.class.getName());
  private static final long FIRST_BACKOFF_MILLIS = 200;
  private static final long PRUNE_INTERVAL_NANOS = TimeUnit.SECONDS.toNanos(60);
  private static final long GET_JWKS_TIMEOUT_MILLIS = 5000;

  private final Channel channel;
  private final Duration readyTimeout;
  private final long idleTimeoutNanos;
  private final long maxBackoffMillis;
  private final long keyMaxAgeNanos;
  private final long maxStalenessNanos;
  private final StalePolicy stalePolicy;
  private final BiConsumer<Boolean, Duration> onStale;
  private final FetchingKeySource keys;
  private final RevocationSet revocations = new RevocationSet();
  private final CountDownLatch synced = new CountDownLatch(1);
  private final Follower<JwksEvent> jwksFollower;
  private final Follower<RevocationEvent> revocationFollower;
  private final Thread watchdog;
  private volatile long keysReceivedAt = System.nanoTime();
  private volatile long revocationsHealthyAt = System.nanoTime();
  private volatile boolean staleReported;
  private volatile boolean started;
  private volatile boolean closed;
  private long nextPrune;

  private LiveSource(Builder builder) {
    channel = builder.channel;
    readyTimeout = builder.readyTimeout;
    idleTimeoutNanos = builder.idleTimeout.toNanos();
    maxBackoffMillis = builder.maxBackoff.toMillis();
    keyMaxAgeNanos = builder.keyMaxAge.toNanos();
    maxStalenessNanos = builder.maxStaleness.toNanos();
    stalePolicy = builder.stalePolicy;
    onStale = builder.onStale;
    TokenServiceGrpc.TokenServiceBlockingStub stub = TokenServiceGrpc.newBlockingStub(channel);
    keys = new FetchingKeySource(() -> {
      String json = stub.withDeadlineAfter(GET_JWKS_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS)
          .getJwks(GetJwksRequest.getDefaultInstance()).getJwksJson();
      keysReceivedAt = System.nanoTime();
      return json;
    }, null, builder.minRefetchInterval);
    jwksFollower = new Follower<>("jwks",
        s -> s.watchJwks(WatchJwksRequest.getDefaultInstance()), this::onJwks, status -> {});
    revocationFollower = new Follower<>("revocations",
        s -> s.watchRevocations(WatchRevocationsRequest.newBuilder()
            .setFromSequence(revocations.sequence).build()),
        this::onRevocation, this::onRevocationError);
    watchdog = new Thread(this::watch, "tokend-live-watchdog");
    watchdog.setDaemon(true);
  }

  /**
   * Starts a live source on a channel to tokend (e.g. {@link TokendChannels#mtls}); the
   * caller keeps and eventually shuts down the channel.
   *
   * @param channel the channel
   * @return a builder
   */
  public static Builder builder(Channel channel) {
    return new Builder(Objects.requireNonNull(channel, "channel"));
  }

  /**
   * The current key set; the first call fetches it, opens the streams and waits for the
   * revocations in force.
   *
   * @throws KeySetUnavailableException when tokend cannot be reached at first, or under
   *     {@link StalePolicy#FAIL_CLOSED} when the revocation feed has been lost too long
   */
  @Override
  public JwkSet keys() {
    JwkSet current = keys.keys();
    if (!started) {
      start();
    }
    checkFresh();
    return current;
  }

  @Override
  public JwkSet refetchForUnknownKey(JwkSet seen) {
    return keys.refetchForUnknownKey(seen);
  }

  /** True once the revocations in force when the stream opened have all arrived. */
  public boolean synced() {
    return synced.getCount() == 0;
  }

  /** How many times a stream was reopened (for monitoring). */
  public int reconnects() {
    return jwksFollower.reconnects + revocationFollower.reconnects;
  }

  /**
   * How long since the revocation feed last confirmed that this source is current (a
   * checkpoint; tokend sends one at least every 15 s while connected), for a metric.
   *
   * @return the age of the revocation state
   */
  public Duration staleness() {
    return Duration.ofNanos(System.nanoTime() - revocationsHealthyAt);
  }

  /**
   * Whether verified {@code claims} name a revoked jti or a revoked subject's token.
   *
   * @param claims the claims of an otherwise valid token
   * @param now the verifier's clock
   * @return true when revoked
   */
  public boolean isRevoked(Map<String, Object> claims, Instant now) {
    return revocations.isRevoked(claims, now);
  }

  /** Closes both streams and stops the threads (the last state stays usable). */
  @Override
  public void close() {
    closed = true;
    jwksFollower.stop();
    revocationFollower.stop();
    watchdog.interrupt();
    keys.close();
  }

  private synchronized void start() {
    if (started) {
      return;
    }
    if (closed) {
      throw new IllegalStateException("LiveSource is closed");
    }
    revocationsHealthyAt = System.nanoTime();
    jwksFollower.start();
    revocationFollower.start();
    watchdog.start();
    started = true;
    try {
      if (!synced.await(readyTimeout.toMillis(), TimeUnit.MILLISECONDS)) {
        throw new KeySetUnavailableException("tokend's revocations did not arrive within "
            + readyTimeout.toMillis() + " ms; is tokend reachable?", null);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new KeySetUnavailableException("interrupted waiting for tokend's revocations", e);
    }
  }

  private void checkFresh() {
    if (synced.getCount() != 0) {
      throw new KeySetUnavailableException("tokend's revocations have not arrived yet", null);
    }
    long silent = System.nanoTime() - revocationsHealthyAt;
    if (silent > maxStalenessNanos) {
      reportStale(true, silent);
      if (stalePolicy == StalePolicy.FAIL_CLOSED) {
        throw new KeySetUnavailableException("tokend's revocation feed has been lost for "
            + TimeUnit.NANOSECONDS.toMillis(silent) + " ms (fail-closed)", null);
      }
    }
  }

  /** Tells the callback of each change between fresh and stale, once. */
  private void reportStale(boolean stale, long downNanos) {
    synchronized (onStale) {
      if (staleReported == stale) {
        return;
      }
      staleReported = stale;
    }
    LOG.log(stale ? Level.WARNING : Level.INFO,
        stale ? "tokend revocation feed lost for {0} ms; policy {1}"
            : "tokend revocation feed back after {0} ms", TimeUnit.NANOSECONDS.toMillis(downNanos),
        stalePolicy);
    try {
      onStale.accept(stale, Duration.ofNanos(downNanos));
    } catch (RuntimeException e) {
      LOG.log(Level.WARNING, "onStale callback failed", e);
    }
  }

  private void watch() {
    while (!closed) {
      try {
        Thread.sleep(1000);
      } catch (InterruptedException e) {
        return;
      }
      jwksFollower.cancelIfIdle();
      revocationFollower.cancelIfIdle();
      long silent = System.nanoTime() - revocationsHealthyAt;
      if (synced.getCount() == 0 && silent > maxStalenessNanos) {
        reportStale(true, silent); // also without verify traffic, for the alert
      }
      if (System.nanoTime() - keysReceivedAt > keyMaxAgeNanos) {
        // The stream should have kept the keys fresh; poll so a withdrawn key goes anyway.
        keysReceivedAt = System.nanoTime();
        try {
          keys.refresh();
        } catch (KeySetUnavailableException e) {
          LOG.log(Level.WARNING, "tokend key refresh failed, keeping the current keys: {0}",
              e.getMessage());
        }
      }
    }
  }

  private void onJwks(JwksEvent event) {
    keysReceivedAt = System.nanoTime();
    if (event.getKeepAlive() && keys.currentOrNull() != null) {
      return; // unchanged: no need to parse it again
    }
    try {
      keys.replace(FetchingKeySource.usable(event.getJwksJson()));
    } catch (IllegalArgumentException e) {
      LOG.log(Level.WARNING, "tokend sent an unusable key set, keeping the current keys: {0}",
          e.getMessage());
    }
  }

  private void onRevocation(RevocationEvent event) {
    revocations.apply(event);
    if (event.getCheckpoint()) {
      long before = revocationsHealthyAt;
      revocationsHealthyAt = System.nanoTime();
      if (staleReported) {
        reportStale(false, revocationsHealthyAt - before);
      }
      synced.countDown();
      long now = System.nanoTime();
      if (now - nextPrune >= 0) {
        revocations.prune(Instant.now());
        nextPrune = now + PRUNE_INTERVAL_NANOS;
      }
    }
  }

  private void onRevocationError(Status status) {
    if (status.getCode() == Status.Code.FAILED_PRECONDITION) {
      // Our sequence is ahead of tokend's feed (its store was replaced): replay from the
      // start. What we hold stays: it only ever denies more, and expires.
      revocations.sequence = 0;
    }
  }

  /** The revocations received so far, each kept until the tokens it names expire. */
  static final class RevocationSet {
    private final Map<String, Double> jtis = new ConcurrentHashMap<>(); // jti -> expiry
    private final Map<String, double[]> subjects = new ConcurrentHashMap<>(); // {nb, expiry}
    volatile long sequence;

    void apply(RevocationEvent event) {
      if (!event.getCheckpoint()) {
        double expiresAt = seconds(event.getExpiresAt());
        if (event.getKind().equals("jti")) {
          jtis.merge(event.getValue(), expiresAt, Math::max);
        } else if (event.getKind().equals("subject")) {
          double notBefore = seconds(event.getNotBefore());
          // Both maxima: only ever denies more, and each entry ends with its tokens anyway.
          subjects.merge(event.getValue(), new double[] {notBefore, expiresAt},
              (a, b) -> new double[] {Math.max(a[0], b[0]), Math.max(a[1], b[1])});
        }
        // "family" is informational (its tokens arrive as jti events); newer kinds are
        // ignored rather than guessed at.
      }
      sequence = Math.max(sequence, event.getSequence());
    }

    boolean isRevoked(Map<String, Object> claims, Instant now) {
      BigDecimal moment = BigDecimal.valueOf(now.getEpochSecond())
          .add(BigDecimal.valueOf(now.getNano(), 9));
      Double jtiExpiry = claims.get("jti") instanceof String jti ? jtis.get(jti) : null;
      if (jtiExpiry != null && new BigDecimal(jtiExpiry).compareTo(moment) > 0) {
        return true;
      }
      double[] entry = claims.get("sub") instanceof String sub ? subjects.get(sub) : null;
      if (entry == null || new BigDecimal(entry[1]).compareTo(moment) <= 0) {
        return false;
      }
      Object iat = claims.get("iat");
      BigDecimal issued = iat instanceof Long l ? BigDecimal.valueOf(l)
          : iat instanceof BigInteger b ? new BigDecimal(b)
          : iat instanceof Double d ? new BigDecimal(d) : null;
      // Without a usable iat the token cannot prove it came after the revocation.
      if (issued == null) {
        return true;
      }
      // The same second counts as before: iat has one-second resolution.
      return issued.compareTo(new BigDecimal(entry[0])) <= 0;
    }

    int prune(Instant now) {
      double moment = now.getEpochSecond() + now.getNano() / 1e9;
      int before = jtis.size() + subjects.size();
      jtis.values().removeIf(expiry -> expiry <= moment);
      subjects.values().removeIf(entry -> entry[1] <= moment);
      return before - jtis.size() - subjects.size();
    }

    int size() {
      return jtis.size() + subjects.size();
    }

    /** As the Python client: seconds + nanos / 1e9, in the same double arithmetic. */
    private static double seconds(Timestamp stamp) {
      return stamp.getSeconds() + stamp.getNanos() / 1e9;
    }
  }

  /** Keeps one server stream open in a daemon thread: reopen with backoff, cancel when idle. */
  private final class Follower<E> {
    private final String name;
    private final Function<TokenServiceGrpc.TokenServiceBlockingStub, Iterator<E>> open;
    private final Consumer<E> handle;
    private final Consumer<Status> onError;
    private final Thread thread;
    private volatile Context.CancellableContext call;
    private volatile long lastEvent = System.nanoTime();
    volatile int reconnects;

    Follower(String name, Function<TokenServiceGrpc.TokenServiceBlockingStub, Iterator<E>> open,
        Consumer<E> handle, Consumer<Status> onError) {
      this.name = name;
      this.open = open;
      this.handle = handle;
      this.onError = onError;
      this.thread = new Thread(this::run, "tokend-" + name);
      thread.setDaemon(true);
    }

    void start() {
      thread.start();
    }

    void stop() {
      Context.CancellableContext current = call;
      if (current != null) {
        current.cancel(null);
      }
      thread.interrupt();
    }

    void cancelIfIdle() {
      if (System.nanoTime() - lastEvent > idleTimeoutNanos) {
        LOG.log(Level.WARNING, "tokend {0} stream silent too long; reopening", name);
        lastEvent = System.nanoTime();
        Context.CancellableContext current = call;
        if (current != null) {
          current.cancel(null);
        }
      }
    }

    private void run() {
      long delay = FIRST_BACKOFF_MILLIS;
      while (!closed) {
        if (followOnce()) {
          delay = FIRST_BACKOFF_MILLIS; // it worked for a while: reconnect promptly
        }
        if (closed) {
          return;
        }
        reconnects++;
        // Jitter: a fleet of backends must not reconnect to a restarted tokend at once.
        long wait = (long) (delay * ThreadLocalRandom.current().nextDouble(0.5, 1.0));
        try {
          Thread.sleep(wait);
        } catch (InterruptedException e) {
          return;
        }
        delay = Math.min(delay * 2, maxBackoffMillis);
      }
    }

    /** One stream until it ends; true when it delivered at least one event. */
    private boolean followOnce() {
      boolean received = false;
      Context.CancellableContext context = Context.current().withCancellation();
      call = context;
      Context previous = context.attach();
      try {
        lastEvent = System.nanoTime();
        if (closed) {
          return false;
        }
        Iterator<E> events = open.apply(TokenServiceGrpc.newBlockingStub(channel));
        while (events.hasNext()) {
          E event = events.next();
          lastEvent = System.nanoTime();
          handle.accept(event);
          received = true;
        }
      } catch (StatusRuntimeException e) {
        if (!closed) {
          LOG.log(Level.WARNING, "tokend {0} stream ended: {1}", name, e.getStatus().getCode());
          onError.accept(e.getStatus());
        }
      } catch (RuntimeException e) {
        LOG.log(Level.WARNING, "tokend " + name + " stream failed", e);
      } finally {
        context.detach(previous);
        context.cancel(null); // after a failure in handle(): do not leave the call open
        call = null;
      }
      return received;
    }
  }

  /** Configures a {@link LiveSource}. */
  public static final class Builder {
    private final Channel channel;
    private Duration readyTimeout = Duration.ofSeconds(10);
    private Duration idleTimeout = Duration.ofSeconds(60);
    private Duration maxBackoff = Duration.ofSeconds(30);
    private Duration minRefetchInterval = Duration.ofSeconds(5);
    private Duration keyMaxAge = Duration.ofMinutes(5);
    private Duration maxStaleness = Duration.ofSeconds(120);
    private StalePolicy stalePolicy = StalePolicy.FAIL_CLOSED;
    private BiConsumer<Boolean, Duration> onStale = (stale, downFor) -> {};

    private Builder(Channel channel) {
      this.channel = channel;
    }

    /**
     * How long the first use waits for the revocations in force (default 10 s).
     *
     * @param timeout a positive duration
     * @return this builder
     */
    public Builder readyTimeout(Duration timeout) {
      this.readyTimeout = positive(timeout, "readyTimeout");
      return this;
    }

    /**
     * A stream silent this long is reopened (default 60 s; tokend sends a keep-alive every
     * 15 s).
     *
     * @param timeout a positive duration
     * @return this builder
     */
    public Builder idleTimeout(Duration timeout) {
      this.idleTimeout = positive(timeout, "idleTimeout");
      return this;
    }

    /**
     * The longest wait between reconnection attempts (default 30 s).
     *
     * @param backoff a positive duration
     * @return this builder
     */
    public Builder maxBackoff(Duration backoff) {
      this.maxBackoff = positive(backoff, "maxBackoff");
      return this;
    }

    /**
     * The least time between GetJwks calls caused by unknown kids (default 5 s).
     *
     * @param interval a non-negative duration
     * @return this builder
     */
    public Builder minRefetchInterval(Duration interval) {
      if (interval.isNegative()) {
        throw new IllegalArgumentException("minRefetchInterval must not be negative");
      }
      this.minRefetchInterval = interval;
      return this;
    }

    /**
     * Keys not confirmed by the stream for this long are fetched with GetJwks (default 5 min).
     *
     * @param maxAge a positive duration
     * @return this builder
     */
    public Builder keyMaxAge(Duration maxAge) {
      this.keyMaxAge = positive(maxAge, "keyMaxAge");
      return this;
    }

    /**
     * How long the revocation feed may be lost before the stale policy applies (default 120
     * s, as in the Node client).
     *
     * @param maxStaleness a positive duration
     * @return this builder
     */
    public Builder maxStaleness(Duration maxStaleness) {
      this.maxStaleness = positive(maxStaleness, "maxStaleness");
      return this;
    }

    /**
     * What verification does once the feed has been lost for {@code maxStaleness} (default
     * {@link StalePolicy#FAIL_CLOSED}).
     *
     * @param policy the policy
     * @return this builder
     */
    public Builder stalePolicy(StalePolicy policy) {
      this.stalePolicy = Objects.requireNonNull(policy, "policy");
      return this;
    }

    /**
     * Called on every change between fresh and stale, for a metric or an alert: {@code
     * (true, downFor)} once the feed has been lost for {@code maxStaleness}, {@code (false,
     * downFor)} when it is back. Runs on a verify or stream thread: must not block.
     *
     * @param callback the callback
     * @return this builder
     */
    public Builder onStale(BiConsumer<Boolean, Duration> callback) {
      this.onStale = Objects.requireNonNull(callback, "callback");
      return this;
    }

    /**
     * Builds the source; nothing is fetched before its first use.
     *
     * @return the source
     */
    public LiveSource build() {
      return new LiveSource(this);
    }

    private static Duration positive(Duration value, String name) {
      if (value == null || value.isNegative() || value.isZero()) {
        throw new IllegalArgumentException(name + " must be positive");
      }
      return value;
    }
  }
}
