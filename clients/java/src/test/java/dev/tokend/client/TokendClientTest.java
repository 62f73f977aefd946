package dev.tokend.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import dev.tokend.v1.InvalidRequest;
import dev.tokend.v1.Reason;
import dev.tokend.v1.TokenServiceGrpc;
import dev.tokend.v1.VerifyManyRequest;
import dev.tokend.v1.VerifyManyResponse;
import dev.tokend.v1.VerifyManyResult;
import dev.tokend.v1.VerifyRequest;
import dev.tokend.v1.VerifyResponse;
import io.grpc.BindableService;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * {@link TokendClient}'s verify batcher against TokenService stand-ins over real gRPC on
 * loopback: batching and order, per-item refusals, whole-call errors, deadlines, the switch
 * off, and the fallback to unary Verify against a server without VerifyMany (an older tokend,
 * which a real tokend cannot be made into).
 */
class TokendClientTest {

  /** Answers like tokend: "ok*" valid, "revoked*" REASON_REVOKED, others MALFORMED; no audience refused. */
  static class Stand extends TokenServiceGrpc.TokenServiceImplBase {
    /** Requests of each VerifyMany received, and the serialized size of each. */
    final List<Integer> batchSizes = Collections.synchronizedList(new ArrayList<>());
    final List<Integer> batchBytes = Collections.synchronizedList(new ArrayList<>());
    /** While set, each call waits (at most 10 s) until it is counted down. */
    volatile CountDownLatch gate;
    volatile VerifyManyFailure manyFailure;
    /** Verify handlers entered (the request is in). */
    final AtomicInteger verifyHandlers = new AtomicInteger();
    /** Calls held at the gate that the client cancelled. */
    final AtomicInteger cancelledWhileHeld = new AtomicInteger();
    /** Each call takes this long, so that concurrent calls overlap. */
    volatile long delayMillis;

    record VerifyManyFailure(Status status, com.google.rpc.Status details) {}

    static Object answer(VerifyRequest request) {
      if (request.getAudience().isEmpty()) {
        return InvalidRequest.newBuilder().setField("audience")
            .setDescription("audience is required").setReason("INVALID_AUDIENCE").build();
      }
      String token = request.getToken();
      if (token.startsWith("ok")) {
        return VerifyResponse.newBuilder().setValid(true).setSubject(token + "@" + request.getAudience())
            .build();
      }
      return VerifyResponse.newBuilder().setValid(false)
          .setReason(token.startsWith("revoked") ? Reason.REASON_REVOKED : Reason.REASON_MALFORMED)
          .build();
    }

    void pass() {
      try {
        Thread.sleep(delayMillis);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      CountDownLatch latch = gate;
      long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      try {
        while (latch != null && !latch.await(10, TimeUnit.MILLISECONDS) && System.nanoTime() < end) {
          // The Context is cancelled at once by the transport; onCancel would wait for us.
          if (Context.current().isCancelled()) {
            cancelledWhileHeld.incrementAndGet();
            return;
          }
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }

    @Override
    public void verify(VerifyRequest request, StreamObserver<VerifyResponse> observer) {
      verifyHandlers.incrementAndGet();
      pass();
      Object answer = answer(request);
      if (answer instanceof InvalidRequest invalid) {
        // What tokend's api/errors.py sends for a refused field.
        ErrorInfo info = ErrorInfo.newBuilder().setReason(invalid.getReason()).setDomain("tokend.dev")
            .putMetadata("method", "Verify").putMetadata("field", invalid.getField()).build();
        BadRequest bad = BadRequest.newBuilder().addFieldViolations(BadRequest.FieldViolation
            .newBuilder().setField(invalid.getField()).setDescription(invalid.getDescription())).build();
        observer.onError(StatusProto.toStatusRuntimeException(com.google.rpc.Status.newBuilder()
            .setCode(Status.Code.INVALID_ARGUMENT.value()).setMessage(invalid.getDescription())
            .addDetails(Any.pack(info)).addDetails(Any.pack(bad)).build()));
        return;
      }
      observer.onNext((VerifyResponse) answer);
      observer.onCompleted();
    }

    @Override
    public void verifyMany(VerifyManyRequest request, StreamObserver<VerifyManyResponse> observer) {
      batchSizes.add(request.getRequestsCount());
      batchBytes.add(request.getSerializedSize());
      pass();
      VerifyManyFailure failure = manyFailure;
      if (failure != null) {
        observer.onError(StatusProto.toStatusRuntimeException(failure.details()));
        return;
      }
      VerifyManyResponse.Builder response = VerifyManyResponse.newBuilder();
      for (VerifyRequest item : request.getRequestsList()) {
        Object answer = answer(item);
        response.addResults(answer instanceof InvalidRequest invalid
            ? VerifyManyResult.newBuilder().setInvalid(invalid)
            : VerifyManyResult.newBuilder().setResponse((VerifyResponse) answer));
      }
      observer.onNext(response.build());
      observer.onCompleted();
    }
  }

  /** An older tokend: Verify only, VerifyMany UNIMPLEMENTED (the generated default). */
  static final class OldStand extends Stand {
    @Override
    public void verifyMany(VerifyManyRequest request, StreamObserver<VerifyManyResponse> observer) {
      batchSizes.add(request.getRequestsCount());
      observer.onError(Status.UNIMPLEMENTED.withDescription("Method not found").asRuntimeException());
    }
  }

  /** Counts the calls of each method as they arrive. */
  static final class Counter implements ServerInterceptor {
    final Map<String, AtomicInteger> calls = new ConcurrentHashMap<>();

    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(
        ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
      calls.computeIfAbsent(call.getMethodDescriptor().getBareMethodName(), m -> new AtomicInteger())
          .incrementAndGet();
      return next.startCall(call, headers);
    }

    int of(String method) {
      AtomicInteger count = calls.get(method);
      return count == null ? 0 : count.get();
    }
  }

  private final Counter counter = new Counter();
  private Server server;
  private ManagedChannel channel;
  private final ExecutorService pool = Executors.newFixedThreadPool(16);

  private void start(BindableService service) throws IOException {
    server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(ServerInterceptors.intercept(service, counter))
        .build().start();
    channel = TokendChannels.configure(
        NettyChannelBuilder.forAddress("127.0.0.1", server.getPort()).usePlaintext()).build();
  }

  @AfterEach
  void stop() throws InterruptedException {
    pool.shutdownNow();
    if (channel != null) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    if (server != null) {
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private static VerifyRequest request(String token, String audience) {
    return VerifyRequest.newBuilder().setToken(token).setAudience(audience).build();
  }

  /** A mix of valid, revoked, malformed and refused (no audience) requests. */
  private static VerifyRequest mixed(int i) {
    return switch (i % 5) {
      case 0, 1 -> request("ok-" + i, "orders");
      case 2 -> request("revoked-" + i, "orders");
      case 3 -> request("junk-" + i, "orders");
      default -> request("ok-" + i, "");
    };
  }

  /** mixed(0) .. mixed(count - 1). */
  private static List<VerifyRequest> mixedRequests(int count) {
    List<VerifyRequest> requests = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      requests.add(mixed(i));
    }
    return requests;
  }

  /** Waits (bounded) until the server has counted {@code count} calls of {@code method}. */
  private void awaitCalls(String method, int count) throws InterruptedException {
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
    while (counter.of(method) < count) {
      assertTrue(System.nanoTime() < end, method + " calls: " + counter.of(method) + " of " + count);
      Thread.sleep(5);
    }
  }

  /** What a plain unary Verify (the stub, no batcher) gives: the response or TokendException. */
  private VerifyOutcome unary(VerifyRequest request) {
    try {
      return VerifyOutcome.of(TokenServiceGrpc.newBlockingStub(channel).verify(request));
    } catch (RuntimeException e) {
      return VerifyOutcome.failed(TokendException.from(e));
    }
  }

  private static void assertSameOutcome(VerifyOutcome expected, VerifyOutcome actual) {
    assertEquals(expected.response(), actual.response());
    if (expected.error() != null) {
      TokendException want = expected.error();
      TokendException got = actual.error();
      assertEquals(want.code(), got.code());
      assertEquals(want.reason(), got.reason());
      assertEquals(want.domain(), got.domain());
      assertEquals(want.metadata(), got.metadata());
      assertEquals(want.fieldViolations(), got.fieldViolations());
      assertEquals(want.serverMessage(), got.serverMessage());
    }
  }

  private static VerifyOutcome outcome(Future<VerifyResponse> future) throws InterruptedException {
    try {
      return VerifyOutcome.of(future.get(10, TimeUnit.SECONDS));
    } catch (java.util.concurrent.ExecutionException e) {
      return VerifyOutcome.failed((TokendException) e.getCause());
    } catch (java.util.concurrent.TimeoutException e) {
      throw new AssertionError("no answer in 10 s", e);
    }
  }

  @Test
  void aLoneCallIsAUnaryVerify() throws IOException {
    start(new Stand());
    TokendClient client = TokendClient.of(channel);
    VerifyResponse answer = client.verify("ok-1", "orders");
    assertTrue(answer.getValid());
    assertEquals("ok-1@orders", answer.getSubject());
    assertEquals(1, counter.of("Verify"));
    assertEquals(0, counter.of("VerifyMany"));
  }

  @Test
  void overlappingCallsShareOneVerifyManyInOrder() throws Exception {
    Stand stand = new Stand();
    start(stand);
    TokendClient client = TokendClient.builder(channel).maxInFlight(1).build();
    stand.gate = new CountDownLatch(1);
    CompletableFuture<VerifyResponse> first = client.verifyAsync(request("ok-first", "orders"));
    awaitCalls("Verify", 1);   // the slot is taken: what follows waits
    List<VerifyRequest> requests = new ArrayList<>();
    List<CompletableFuture<VerifyResponse>> answers = new ArrayList<>();
    for (int i = 0; i < 20; i++) {
      requests.add(mixed(i));
      answers.add(client.verifyAsync(requests.get(i)));
    }
    assertEquals(0, counter.of("VerifyMany"));
    stand.gate.countDown();
    assertTrue(outcome(first).ok());
    for (int i = 0; i < 20; i++) {
      assertSameOutcome(unary(requests.get(i)), outcome(answers.get(i)));
    }
    assertEquals(List.of(20), stand.batchSizes);
  }

  @Test
  void manyConcurrentCallsAnswerAsUnaryWithFewerRpcs() throws Exception {
    Stand stand = new Stand();
    start(stand);
    stand.delayMillis = 5;
    TokendClient client = TokendClient.builder(channel).maxInFlight(2).build();
    int calls = 200;
    List<VerifyOutcome> got = ConcurrentVerify.outcomes(pool, client, mixedRequests(calls));
    int rpcs = counter.of("Verify") + counter.of("VerifyMany");
    for (int i = 0; i < calls; i++) {
      assertSameOutcome(unary(mixed(i)), got.get(i));
    }
    assertTrue(counter.of("VerifyMany") > 0, "no VerifyMany");
    assertTrue(rpcs < calls, rpcs + " RPCs for " + calls + " calls");
    for (int size : stand.batchSizes) {
      assertTrue(size >= 2 && size <= 64, "batch of " + size);
    }
  }

  @Test
  void anInvalidItemRaisesWhatAUnaryVerifyRaises() throws Exception {
    Stand stand = new Stand();
    start(stand);
    TokendException unaryError = unary(request("ok", "")).error();
    assertEquals(Status.Code.INVALID_ARGUMENT, unaryError.code());
    TokendClient client = TokendClient.builder(channel).maxInFlight(1).build();
    stand.gate = new CountDownLatch(1);
    CompletableFuture<VerifyResponse> first = client.verifyAsync(request("ok-0", "orders"));
    awaitCalls("Verify", 1);
    CompletableFuture<VerifyResponse> bad = client.verifyAsync(request("ok", ""));
    CompletableFuture<VerifyResponse> good = client.verifyAsync(request("ok-2", "orders"));
    stand.gate.countDown();
    outcome(first);
    VerifyOutcome refused = outcome(bad);
    assertSameOutcome(VerifyOutcome.failed(unaryError), refused);
    assertEquals("INVALID_AUDIENCE", refused.error().reason());
    assertEquals(List.of(new TokendException.FieldViolation("audience", "audience is required")),
        refused.error().fieldViolations());
    assertTrue(outcome(good).response().getValid());
    assertEquals(List.of(2), stand.batchSizes);
    // The blocking form throws it.
    TokendException thrown = assertThrows(TokendException.class,
        () -> TokendClient.of(channel).verify(request("ok", "")));
    assertEquals(Status.Code.INVALID_ARGUMENT, thrown.code());
  }

  @Test
  void aWholeCallErrorFailsEveryItemOfTheBatch() throws Exception {
    Stand stand = new Stand();
    start(stand);
    com.google.rpc.Status denied = com.google.rpc.Status.newBuilder()
        .setCode(Status.Code.PERMISSION_DENIED.value()).setMessage("not for you")
        .addDetails(Any.pack(ErrorInfo.newBuilder().setReason("POLICY_DENIED").setDomain("tokend.dev")
            .putMetadata("method", "VerifyMany").build()))
        .build();
    stand.manyFailure = new Stand.VerifyManyFailure(Status.PERMISSION_DENIED, denied);
    TokendClient client = TokendClient.builder(channel).maxInFlight(1).build();
    stand.gate = new CountDownLatch(1);
    CompletableFuture<VerifyResponse> first = client.verifyAsync(request("ok-0", "orders"));
    awaitCalls("Verify", 1);
    List<CompletableFuture<VerifyResponse>> batch = List.of(
        client.verifyAsync(request("ok-1", "orders")), client.verifyAsync(request("ok-2", "orders")),
        client.verifyAsync(request("ok-3", "")));
    stand.gate.countDown();
    assertTrue(outcome(first).ok());
    for (CompletableFuture<VerifyResponse> item : batch) {
      TokendException error = outcome(item).error();
      assertEquals(Status.Code.PERMISSION_DENIED, error.code());
      assertEquals("POLICY_DENIED", error.reason());
      assertEquals("not for you", error.serverMessage());
    }
    assertEquals(1, counter.of("VerifyMany"));
  }

  @Test
  void aWaitingItemFailsAtItsDeadlineWithoutWaitingForItsBatch() throws Exception {
    Stand stand = new Stand();
    start(stand);
    TokendClient client = TokendClient.builder(channel).maxInFlight(1).build();
    stand.gate = new CountDownLatch(1);
    CompletableFuture<VerifyResponse> first = client.verifyAsync(request("ok-0", "orders"));
    awaitCalls("Verify", 1);
    long started = System.nanoTime();
    TokendException error = assertThrows(TokendException.class,
        () -> client.verify(request("ok-1", "orders"), Duration.ofMillis(200)));
    long tookMillis = (System.nanoTime() - started) / 1_000_000;
    assertEquals(Status.Code.DEADLINE_EXCEEDED, error.code());
    assertTrue(tookMillis >= 150 && tookMillis < 1_000, "took " + tookMillis + " ms");
    // The same without a blocked caller: the future itself fails at its deadline.
    started = System.nanoTime();
    CompletableFuture<VerifyResponse> waiting =
        client.verifyAsync(request("ok-1", "orders"), Duration.ofMillis(200));
    assertEquals(Status.Code.DEADLINE_EXCEEDED, outcome(waiting).error().code());
    tookMillis = (System.nanoTime() - started) / 1_000_000;
    assertTrue(tookMillis >= 150 && tookMillis < 1_000, "took " + tookMillis + " ms");
    assertFalse(first.isDone());
    // A waiting item whose caller cancels is dropped, never sent.
    CompletableFuture<VerifyResponse> dropped = client.verifyAsync(request("ok-2", "orders"));
    dropped.cancel(false);
    CompletableFuture<VerifyResponse> kept = client.verifyAsync(request("ok-3", "orders"));
    stand.gate.countDown();
    assertTrue(outcome(first).ok());
    assertEquals("ok-3@orders", outcome(kept).response().getSubject());
    // Only "first" and "kept" reached the server, each alone as a unary Verify.
    assertEquals(2, counter.of("Verify"));
    assertEquals(0, counter.of("VerifyMany"));
  }

  @Test
  void cancellingALoneCallCancelsItsRpc() throws Exception {
    Stand stand = new Stand();
    start(stand);
    TokendClient client = TokendClient.of(channel);
    stand.gate = new CountDownLatch(1);
    CompletableFuture<VerifyResponse> lone = client.verifyAsync(request("ok-0", "orders"));
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
    while (stand.verifyHandlers.get() == 0) {   // held at the gate, in its handler
      assertTrue(System.nanoTime() < end, "the call never reached its handler");
      Thread.sleep(5);
    }
    assertTrue(lone.cancel(false));
    // Well before the call's 5 s deadline would cancel it anyway.
    end = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
    while (stand.cancelledWhileHeld.get() == 0) {
      assertTrue(System.nanoTime() < end, "the server never saw the cancellation");
      Thread.sleep(5);
    }
    stand.gate.countDown();
    // The slot it held is free again: the next call is answered.
    assertTrue(client.verify("ok-1", "orders").getValid());
  }

  @Test
  void theCallersContextDeadlineApplies() throws Exception {
    Stand stand = new Stand();
    start(stand);
    TokendClient client = TokendClient.builder(channel).maxInFlight(1).build();
    stand.gate = new CountDownLatch(1);
    client.verifyAsync(request("ok-0", "orders"));
    awaitCalls("Verify", 1);
    var scheduler = Executors.newSingleThreadScheduledExecutor();
    Context.CancellableContext context = Context.current()
        .withDeadlineAfter(150, TimeUnit.MILLISECONDS, scheduler);
    try {
      TokendException error = context.call(() -> assertThrows(TokendException.class,
          () -> client.verify(request("ok-1", "orders"))));
      assertTrue(error.code() == Status.Code.DEADLINE_EXCEEDED || error.code() == Status.Code.CANCELLED,
          error.code().toString());
    } finally {
      context.cancel(null);
      scheduler.shutdownNow();
      stand.gate.countDown();
    }
  }

  @Test
  void batchingOffSendsOnlyUnaryCalls() throws Exception {
    start(new Stand());
    TokendClient client = TokendClient.builder(channel).batchVerify(false).maxInFlight(1).build();
    List<VerifyOutcome> answers = ConcurrentVerify.outcomes(pool, client, mixedRequests(40));
    for (int i = 0; i < 40; i++) {
      assertSameOutcome(unary(mixed(i)), answers.get(i));
    }
    assertEquals(0, counter.of("VerifyMany"));
    assertEquals(80, counter.of("Verify"));   // 40 through the client, 40 by unary()
    List<VerifyOutcome> many = client.verifyMany(List.of(mixed(0), mixed(4)));
    assertTrue(many.get(0).ok());
    assertEquals(Status.Code.INVALID_ARGUMENT, many.get(1).error().code());
    assertEquals(0, counter.of("VerifyMany"));
  }

  @Test
  void anOlderServerWithoutVerifyManyGetsUnaryCallsForGood() throws Exception {
    OldStand stand = new OldStand();
    start(stand);
    TokendClient client = TokendClient.builder(channel).maxInFlight(1).build();
    stand.gate = new CountDownLatch(1);
    CompletableFuture<VerifyResponse> first = client.verifyAsync(request("ok-0", "orders"));
    awaitCalls("Verify", 1);
    List<CompletableFuture<VerifyResponse>> answers = new ArrayList<>();
    for (int i = 0; i < 10; i++) {
      answers.add(client.verifyAsync(mixed(i)));
    }
    stand.gate.countDown();
    stand.gate = null;
    assertTrue(outcome(first).ok());
    for (int i = 0; i < 10; i++) {
      assertSameOutcome(unary(mixed(i)), outcome(answers.get(i)));
    }
    assertEquals(1, counter.of("VerifyMany"));
    // Under concurrency afterwards: right answers, and never VerifyMany again.
    List<VerifyOutcome> more = ConcurrentVerify.outcomes(pool, client, mixedRequests(60));
    for (int i = 0; i < 60; i++) {
      assertSameOutcome(unary(mixed(i)), more.get(i));
    }
    List<VerifyOutcome> many = client.verifyMany(List.of(mixed(0), mixed(2), mixed(4)));
    assertSameOutcome(unary(mixed(2)), many.get(1));
    assertEquals(1, counter.of("VerifyMany"));
  }

  @Test
  void verifyManyChunksBy256InOrder() throws IOException {
    Stand stand = new Stand();
    start(stand);
    TokendClient client = TokendClient.of(channel);
    List<VerifyRequest> requests = new ArrayList<>();
    for (int i = 0; i < 600; i++) {
      requests.add(mixed(i));
    }
    List<VerifyOutcome> outcomes = client.verifyMany(requests);
    assertEquals(600, outcomes.size());
    for (int i = 0; i < 600; i++) {
      assertSameOutcome(unary(requests.get(i)), outcomes.get(i));
    }
    List<Integer> sizes = new ArrayList<>(stand.batchSizes);
    Collections.sort(sizes);
    assertEquals(List.of(88, 256, 256), sizes);
    assertEquals(List.of(), client.verifyMany(List.of()));
  }

  @Test
  void batchesRespectMaxBatchAndTheMessageLimit() throws Exception {
    Stand stand = new Stand();
    start(stand);
    TokendClient client = TokendClient.builder(channel).maxInFlight(1).maxBatch(3).build();
    stand.gate = new CountDownLatch(1);
    client.verifyAsync(request("ok-0", "orders"));
    awaitCalls("Verify", 1);
    List<CompletableFuture<VerifyResponse>> answers = new ArrayList<>();
    for (int i = 0; i < 10; i++) {
      answers.add(client.verifyAsync(request("ok-" + i, "orders")));
    }
    stand.gate.countDown();
    for (CompletableFuture<VerifyResponse> answer : answers) {
      assertTrue(outcome(answer).ok());
    }
    assertEquals(List.of(3, 3, 3), stand.batchSizes.subList(0, 3));
    // 8 KiB tokens: 30 of them would pass tokend's 64 KiB message limit, so they split, and
    // still do once tokend has answered a VerifyMany (the same rule as every client's).
    String big = "ok" + "x".repeat(8 * 1024);
    List<VerifyRequest> large = new ArrayList<>();
    for (int i = 0; i < 30; i++) {
      large.add(request(big + i, "orders"));
    }
    TokendClient fresh = TokendClient.of(channel);
    for (int round = 0; round < 2; round++) {
      stand.batchSizes.clear();
      stand.batchBytes.clear();
      fresh.verifyMany(large).forEach(outcome -> assertTrue(outcome.ok()));
      assertTrue(stand.batchSizes.size() >= 5, stand.batchSizes.toString());
      assertEquals(30, stand.batchSizes.stream().mapToInt(Integer::intValue).sum());
      for (int bytes : stand.batchBytes) {
        assertTrue(bytes <= TokendClient.MAX_BATCH_BYTES, bytes + " bytes");
      }
    }
  }

  @Test
  void overlappingCallsStayUnder60KiBAfterAnAnsweredVerifyMany() throws Exception {
    Stand stand = new Stand();
    start(stand);
    TokendClient client = TokendClient.builder(channel).maxInFlight(1).build();
    // First a VerifyMany that tokend answers: small overlapping calls.
    stand.gate = new CountDownLatch(1);
    CompletableFuture<VerifyResponse> lone = client.verifyAsync(request("ok-lone", "orders"));
    awaitCalls("Verify", 1);
    List<CompletableFuture<VerifyResponse>> small = List.of(
        client.verifyAsync(request("ok-a", "orders")), client.verifyAsync(request("ok-b", "orders")));
    stand.gate.countDown();
    assertTrue(outcome(lone).ok());
    for (CompletableFuture<VerifyResponse> answer : small) {
      assertTrue(outcome(answer).ok());
    }
    assertEquals(List.of(2), stand.batchSizes);
    // Then 30 overlapping calls of 8 KiB tokens (about 240 KiB in all) wait behind a held call.
    stand.batchSizes.clear();
    stand.batchBytes.clear();
    stand.gate = new CountDownLatch(1);
    CompletableFuture<VerifyResponse> held = client.verifyAsync(request("ok-held", "orders"));
    awaitCalls("Verify", 2);
    String big = "ok" + "x".repeat(8 * 1024);
    List<CompletableFuture<VerifyResponse>> answers = new ArrayList<>();
    for (int i = 0; i < 30; i++) {
      answers.add(client.verifyAsync(request(big + i, "orders")));
    }
    stand.gate.countDown();
    assertTrue(outcome(held).ok());
    for (int i = 0; i < 30; i++) {
      VerifyOutcome answer = outcome(answers.get(i));
      assertTrue(answer.ok());
      assertEquals(big + i + "@orders", answer.response().getSubject());
    }
    assertEquals(30, stand.batchSizes.stream().mapToInt(Integer::intValue).sum());
    assertTrue(stand.batchSizes.size() >= 5, stand.batchSizes.toString());
    for (int bytes : stand.batchBytes) {
      assertTrue(bytes <= 60 * 1024, bytes + " bytes: over 60 KiB");
    }
    assertEquals(2, counter.of("Verify"));
  }

  @Test
  void optionsAreChecked() throws IOException {
    start(new Stand());
    assertThrows(IllegalArgumentException.class, () -> TokendClient.builder(channel).maxBatch(257));
    assertThrows(IllegalArgumentException.class, () -> TokendClient.builder(channel).maxBatch(0));
    assertThrows(IllegalArgumentException.class, () -> TokendClient.builder(channel).maxInFlight(0));
    assertThrows(IllegalArgumentException.class,
        () -> TokendClient.builder(channel).timeout(Duration.ZERO));
    assertThrows(IllegalArgumentException.class,
        () -> VerifyOutcome.of(null));
  }
}
