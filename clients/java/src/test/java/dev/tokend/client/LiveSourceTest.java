package dev.tokend.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Timestamp;
import dev.tokend.v1.GetJwksRequest;
import dev.tokend.v1.GetJwksResponse;
import dev.tokend.v1.JwksEvent;
import dev.tokend.v1.Reason;
import dev.tokend.v1.RevocationEvent;
import dev.tokend.v1.TokenServiceGrpc;
import dev.tokend.v1.WatchJwksRequest;
import dev.tokend.v1.WatchRevocationsRequest;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * LiveSource against a scripted tokend on loopback gRPC, for the faults a real tokend cannot
 * be made to produce on cue (a stream that breaks mid-way, a feed whose sequence went back, a
 * stream that stays silent, an outage longer than the stale limit). The real server is in
 * LiveSourceInteropTest.
 */
class LiveSourceTest {

  private static TestTokens tokens;
  private static TestTokens rotated;
  private Scripted service;
  private Server server;
  private ManagedChannel channel;

  @BeforeAll
  static void keys() throws Exception {
    tokens = TestTokens.shared();
    rotated = TestTokens.generate("ES256");
  }

  @BeforeEach
  void start() throws Exception {
    service = new Scripted(tokens.publicKeys().toString());
    server = NettyServerBuilder
        .forAddress(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0))
        .addService(service).build().start();
    channel = NettyChannelBuilder.forAddress("127.0.0.1", server.getPort()).usePlaintext()
        .build();
  }

  @AfterEach
  void stop() throws Exception {
    service.closed = true;
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }

  private TokendVerifier verifierOn(LiveSource live) {
    return TokendVerifier.builder().issuer(TestTokens.ISSUER).audience(TestTokens.AUDIENCE)
        .keySource(live).build();
  }

  private static RevocationEvent jti(long sequence, String jti) {
    return RevocationEvent.newBuilder().setSequence(sequence).setKind("jti").setValue(jti)
        .setExpiresAt(at(Instant.now().plusSeconds(3600))).build();
  }

  private static Timestamp at(Instant instant) {
    return Timestamp.newBuilder().setSeconds(instant.getEpochSecond())
        .setNanos(instant.getNano()).build();
  }

  private static void eventually(BooleanSupplier condition, String what) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
    while (!condition.getAsBoolean()) {
      assertTrue(System.nanoTime() < deadline, what);
      Thread.sleep(10);
    }
  }

  private static boolean refused(TokendVerifier verifier, String token, Reason reason) {
    try {
      verifier.verify(token);
      return false;
    } catch (InvalidTokenException e) {
      assertEquals(reason, e.reason());
      return true;
    }
  }

  @Test
  void refusesRevokedTokensAndResumesAfterABrokenStream() throws Exception {
    String first = tokens.mint("ES256");
    String second = tokens.mint("ES256");
    String firstJti = TestTokens.jtiOf(first);
    service.revocations.add(jti(1, firstJti));
    try (LiveSource live = LiveSource.builder(channel).build()) {
      TokendVerifier verifier = verifierOn(live);
      assertTrue(refused(verifier, first, Reason.REASON_REVOKED));
      assertEquals("alice", verifier.verify(second).getSubject());
      service.breakStreams();
      service.revocations.add(jti(2, TestTokens.jtiOf(second)));
      eventually(() -> refused(verifier, second, Reason.REASON_REVOKED), "second not revoked");
      assertTrue(service.fromSequences.size() >= 2, service.fromSequences.toString());
      assertEquals(0L, service.fromSequences.get(0));
      assertTrue(service.fromSequences.get(1) >= 1L, "resumed from the last sequence");
    }
  }

  @Test
  void aSequenceAheadOfTheFeedRestartsFromZero() throws Exception {
    service.revocations.add(jti(5, "some-jti"));
    try (LiveSource live = LiveSource.builder(channel).maxBackoff(Duration.ofMillis(100))
        .build()) {
      live.keys();
      service.failPrecondition = true; // tokend's store was replaced: its feed starts over
      service.breakStreams();
      eventually(() -> service.fromSequences.size() >= 3, "no reconnection");
      List<Long> asked = service.fromSequences;
      assertEquals(List.of(0L, 5L, 0L), asked.subList(0, 3), "resume from 5, then from 0");
    }
  }

  @Test
  void newKeysArriveWithoutPolling() throws Exception {
    try (LiveSource live = LiveSource.builder(channel).build()) {
      TokendVerifier verifier = verifierOn(live);
      verifier.verify(tokens.mint("ES256"));
      service.jwks = rotated.publicKeys().toString();
      String byNewKey = rotated.mint("ES256");
      eventually(() -> !refused(verifier, byNewKey, Reason.REASON_BAD_SIGNATURE),
          "the rotated key did not arrive");
      assertEquals(1, service.getJwksCalls.get(), "the stream, not GetJwks, brought it");
    }
  }

  @Test
  void keysOlderThanTheMaxAgeAreFetchedAgain() throws Exception {
    service.jwksSilent = true; // the stream sends the first set, then nothing
    try (LiveSource live = LiveSource.builder(channel).keyMaxAge(Duration.ofMillis(500))
        .idleTimeout(Duration.ofSeconds(30)).build()) {
      live.keys();
      eventually(() -> service.getJwksCalls.get() >= 2, "no refresh after the max age");
    }
  }

  @Test
  void theFirstUseFailsWhenRevocationsDoNotArrive() {
    service.down = true;
    try (LiveSource live = LiveSource.builder(channel).readyTimeout(Duration.ofMillis(300))
        .build()) {
      assertThrows(KeySetUnavailableException.class, live::keys);
      assertThrows(KeySetUnavailableException.class, live::keys);
    }
  }

  @Test
  void failsClosedWhenTheFeedIsLostTooLong() throws Exception {
    AtomicInteger alerts = new AtomicInteger();
    AtomicInteger recoveries = new AtomicInteger();
    try (LiveSource live = LiveSource.builder(channel).maxStaleness(Duration.ofMillis(400))
        .maxBackoff(Duration.ofMillis(100))
        .onStale((stale, downFor) -> (stale ? alerts : recoveries).incrementAndGet()).build()) {
      TokendVerifier verifier = verifierOn(live);
      String token = tokens.mint("ES256");
      verifier.verify(token);
      service.down = true;
      service.breakStreams();
      eventually(() -> {
        try {
          verifier.verify(token);
          return false;
        } catch (KeySetUnavailableException e) {
          return true;
        } catch (InvalidTokenException e) {
          throw new AssertionError(e);
        }
      }, "still verifying with a lost feed");
      assertThrows(KeySetUnavailableException.class, () -> verifier.verify(token));
      assertEquals(1, alerts.get(), "one alert per outage");
      service.down = false; // tokend is back: verification resumes
      eventually(() -> {
        try {
          verifier.verify(token);
          return true;
        } catch (KeySetUnavailableException | InvalidTokenException e) {
          return false;
        }
      }, "did not recover");
      assertEquals(1, recoveries.get(), "the recovery is reported too");
    }
  }

  @Test
  void failsOpenWhenSoConfigured() throws Exception {
    AtomicInteger alerts = new AtomicInteger();
    try (LiveSource live = LiveSource.builder(channel).maxStaleness(Duration.ofMillis(300))
        .stalePolicy(LiveSource.StalePolicy.FAIL_OPEN)
        .onStale((stale, downFor) -> alerts.addAndGet(stale ? 1 : 100))
        .build()) {
      TokendVerifier verifier = verifierOn(live);
      String token = tokens.mint("ES256");
      verifier.verify(token);
      service.down = true;
      service.breakStreams();
      Thread.sleep(600);
      assertEquals("alice", verifier.verify(token).getSubject());
      assertEquals(1, alerts.get());
      assertTrue(live.staleness().compareTo(Duration.ofMillis(300)) > 0);
    }
  }

  @Test
  void subjectEntriesCoverTokensIssuedUpToNotBefore() {
    LiveSource.RevocationSet set = new LiveSource.RevocationSet();
    Instant now = Instant.ofEpochSecond(1_767_225_600L);
    set.apply(RevocationEvent.newBuilder().setSequence(3).setKind("subject").setValue("bob")
        .setNotBefore(Timestamp.newBuilder().setSeconds(1_767_225_500L).setNanos(500_000_000))
        .setExpiresAt(Timestamp.newBuilder().setSeconds(1_767_229_200L)).build());
    assertTrue(set.isRevoked(Map.of("sub", "bob", "iat", 1_767_225_500L), now));
    assertFalse(set.isRevoked(Map.of("sub", "bob", "iat", 1_767_225_501L), now));
    assertTrue(set.isRevoked(Map.of("sub", "bob", "iat", 1_767_225_500.5), now));
    assertTrue(set.isRevoked(Map.of("sub", "bob"), now), "no iat: cannot prove it is newer");
    assertFalse(set.isRevoked(Map.of("sub", "bob", "iat", 1L), Instant.ofEpochSecond(1_767_229_200L)),
        "the entry ends when its tokens have expired");
    set.apply(RevocationEvent.newBuilder().setSequence(9).setKind("family").setValue("f").build());
    set.apply(RevocationEvent.newBuilder().setSequence(12).setCheckpoint(true).build());
    assertEquals(12, set.sequence);
    assertEquals(1, set.size());
  }

  /** A tokend that follows a script: history, checkpoints every 50 ms, faults on request. */
  static final class Scripted extends TokenServiceGrpc.TokenServiceImplBase {
    final List<RevocationEvent> revocations = new CopyOnWriteArrayList<>();
    final List<Long> fromSequences = new CopyOnWriteArrayList<>();
    final AtomicInteger getJwksCalls = new AtomicInteger();
    volatile String jwks;
    volatile boolean closed;
    volatile boolean down;
    volatile boolean jwksSilent;
    volatile boolean failPrecondition;
    private volatile int generation;

    Scripted(String jwks) {
      this.jwks = jwks;
    }

    void breakStreams() {
      generation++;
    }

    @Override
    public void getJwks(GetJwksRequest request, StreamObserver<GetJwksResponse> response) {
      getJwksCalls.incrementAndGet();
      response.onNext(GetJwksResponse.newBuilder().setJwksJson(jwks).build());
      response.onCompleted();
    }

    @Override
    public void watchJwks(WatchJwksRequest request, StreamObserver<JwksEvent> response) {
      ServerCallStreamObserver<JwksEvent> call = (ServerCallStreamObserver<JwksEvent>) response;
      if (down) {
        response.onError(Status.UNAVAILABLE.asRuntimeException());
        return;
      }
      int born = generation;
      String sent = jwks;
      response.onNext(JwksEvent.newBuilder().setJwksJson(sent).build());
      while (!closed && !call.isCancelled()) {
        if (born != generation || down) {
          response.onError(Status.UNAVAILABLE.asRuntimeException());
          return;
        }
        if (!sent.equals(jwks)) {
          sent = jwks;
          response.onNext(JwksEvent.newBuilder().setJwksJson(sent).build());
        } else if (!jwksSilent) {
          response.onNext(JwksEvent.newBuilder().setJwksJson(sent).setKeepAlive(true).build());
        }
        pause();
      }
    }

    @Override
    public void watchRevocations(WatchRevocationsRequest request,
        StreamObserver<RevocationEvent> response) {
      ServerCallStreamObserver<RevocationEvent> call =
          (ServerCallStreamObserver<RevocationEvent>) response;
      fromSequences.add(request.getFromSequence());
      if (down) {
        response.onError(Status.UNAVAILABLE.asRuntimeException());
        return;
      }
      if (failPrecondition && request.getFromSequence() > 0) {
        response.onError(Status.FAILED_PRECONDITION.asRuntimeException());
        return;
      }
      int born = generation;
      long sent = request.getFromSequence();
      while (!closed && !call.isCancelled()) {
        if (born != generation || down) {
          response.onError(Status.UNAVAILABLE.asRuntimeException());
          return;
        }
        for (RevocationEvent event : revocations) {
          if (event.getSequence() > sent) {
            response.onNext(event);
            sent = event.getSequence();
          }
        }
        response.onNext(RevocationEvent.newBuilder().setSequence(sent).setCheckpoint(true)
            .build());
        pause();
      }
    }

    private static void pause() {
      try {
        Thread.sleep(50);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }
}
