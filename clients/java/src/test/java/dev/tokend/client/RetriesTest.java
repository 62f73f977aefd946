package dev.tokend.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.tokend.v1.IssueRequest;
import dev.tokend.v1.IssueResponse;
import dev.tokend.v1.RefreshRequest;
import dev.tokend.v1.TokenServiceGrpc;
import dev.tokend.v1.VerifyRequest;
import dev.tokend.v1.VerifyResponse;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Retries and default deadlines of {@link TokendChannels} against a scripted TokenService
 * over real gRPC on loopback (the real tokend cannot answer UNAVAILABLE or slowly on cue).
 */
class RetriesTest {

  /** Fails the next calls of a method as scripted, then answers. */
  static final class Scripted extends TokenServiceGrpc.TokenServiceImplBase {
    final Map<String, Deque<Status.Code>> failures = new HashMap<>();
    final Map<String, Integer> calls = new HashMap<>();
    final List<String> keys = new ArrayList<>();
    volatile long delayMillis;

    synchronized void fail(String method, Status.Code code, int times) {
      Deque<Status.Code> queue = failures.computeIfAbsent(method, m -> new ArrayDeque<>());
      for (int i = 0; i < times; i++) {
        queue.add(code);
      }
    }

    synchronized int calls(String method) {
      return calls.getOrDefault(method, 0);
    }

    private <T> void answer(String method, T response, StreamObserver<T> observer) {
      Status.Code code;
      synchronized (this) {
        calls.merge(method, 1, Integer::sum);
        Deque<Status.Code> queue = failures.get(method);
        code = queue == null ? null : queue.poll();
      }
      try {
        Thread.sleep(delayMillis);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      if (code != null) {
        observer.onError(Status.fromCode(code).withDescription("scripted failure").asRuntimeException());
        return;
      }
      observer.onNext(response);
      observer.onCompleted();
    }

    @Override
    public void verify(VerifyRequest request, StreamObserver<VerifyResponse> observer) {
      answer("Verify", VerifyResponse.getDefaultInstance(), observer);
    }

    @Override
    public void issue(IssueRequest request, StreamObserver<IssueResponse> observer) {
      answer("Issue", IssueResponse.getDefaultInstance(), observer);
    }

    @Override
    public void refresh(RefreshRequest request, StreamObserver<IssueResponse> observer) {
      synchronized (this) {
        keys.add(request.getIdempotencyKey());
      }
      answer("Refresh", IssueResponse.getDefaultInstance(), observer);
    }
  }

  private final Scripted scripted = new Scripted();
  private Server server;
  private ManagedChannel channel;
  private TokenServiceGrpc.TokenServiceBlockingStub stub;

  @BeforeEach
  void start() throws IOException {
    server =
        NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
            .addService(scripted)
            .build()
            .start();
    channel =
        TokendChannels.configure(
                NettyChannelBuilder.forAddress("127.0.0.1", server.getPort()).usePlaintext())
            .build();
    stub = TokenServiceGrpc.newBlockingStub(channel);
  }

  @AfterEach
  void stop() throws InterruptedException {
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }

  private static VerifyRequest verifyRequest() {
    return VerifyRequest.newBuilder().setToken("a.b.c").setAudience("orders").build();
  }

  @Test
  void unavailableVerifyAndIssueAreRetried() {
    scripted.fail("Verify", Status.Code.UNAVAILABLE, 2);
    scripted.fail("Issue", Status.Code.UNAVAILABLE, 3);
    stub.verify(verifyRequest());
    stub.issue(IssueRequest.newBuilder().setSubject("alice").build());
    assertEquals(3, scripted.calls("Verify"));
    assertEquals(4, scripted.calls("Issue"));
  }

  @Test
  void retriesAreBoundedAndOtherCodesAreAnswers() {
    scripted.fail("Verify", Status.Code.UNAVAILABLE, 10);
    scripted.fail("Issue", Status.Code.INVALID_ARGUMENT, 1);
    StatusRuntimeException verify =
        assertThrows(StatusRuntimeException.class, () -> stub.verify(verifyRequest()));
    assertEquals(Status.Code.UNAVAILABLE, verify.getStatus().getCode());
    assertEquals(4, scripted.calls("Verify"));
    StatusRuntimeException issue =
        assertThrows(
            StatusRuntimeException.class,
            () -> stub.issue(IssueRequest.newBuilder().setSubject("alice").build()));
    assertEquals(Status.Code.INVALID_ARGUMENT, issue.getStatus().getCode());
    assertEquals(1, scripted.calls("Issue"));
  }

  @Test
  void refreshRetriesCarryOneKey() {
    scripted.fail("Refresh", Status.Code.UNAVAILABLE, 2);
    stub.refresh(RefreshRequest.newBuilder().setRefreshToken("tkd_rt_x").build());
    String mine = TokendChannels.newIdempotencyKey();
    scripted.fail("Refresh", Status.Code.UNAVAILABLE, 1);
    stub.refresh(
        RefreshRequest.newBuilder().setRefreshToken("tkd_rt_y").setIdempotencyKey(mine).build());
    List<String> keys;
    synchronized (scripted) {
      keys = List.copyOf(scripted.keys);
    }
    assertEquals(5, keys.size(), keys.toString());
    assertEquals(32, keys.get(0).length());
    assertEquals(keys.get(0), keys.get(1));
    assertEquals(keys.get(1), keys.get(2));
    assertNotEquals(mine, keys.get(0));
    assertEquals(List.of(mine, mine), keys.subList(3, 5));
  }

  @Test
  void theDefaultDeadlineIsTheServiceConfigs() {
    scripted.delayMillis = 6_000;
    long started = System.nanoTime();
    StatusRuntimeException error =
        assertThrows(StatusRuntimeException.class, () -> stub.verify(verifyRequest()));
    long tookMillis = (System.nanoTime() - started) / 1_000_000;
    assertEquals(Status.Code.DEADLINE_EXCEEDED, error.getStatus().getCode());
    assertTrue(tookMillis >= 4_900 && tookMillis < 5_800, "took " + tookMillis + " ms");
    assertEquals(1, scripted.calls("Verify"));
    // A call's own, shorter deadline wins.
    started = System.nanoTime();
    error =
        assertThrows(
            StatusRuntimeException.class,
            () -> stub.withDeadlineAfter(300, TimeUnit.MILLISECONDS).verify(verifyRequest()));
    assertEquals(Status.Code.DEADLINE_EXCEEDED, error.getStatus().getCode());
    assertTrue(System.nanoTime() - started < 1_000_000_000L);
  }

  @Test
  void theServiceConfigIsTheRepositorys() throws Exception {
    byte[] packaged;
    try (var in = TokendChannels.class.getResourceAsStream("service-config.json")) {
      packaged = in.readAllBytes();
    }
    assertEquals(
        Files.readString(Path.of("..", "service-config.json")),
        new String(packaged, java.nio.charset.StandardCharsets.UTF_8));
    @SuppressWarnings("unchecked")
    var first = (Map<String, ?>) ((List<?>) TokendChannels.serviceConfig().get("methodConfig")).get(0);
    assertEquals("5s", first.get("timeout"));
    assertEquals(4.0, ((Map<?, ?>) first.get("retryPolicy")).get("maxAttempts"));
  }
}
