package dev.tokend.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.tokend.v1.InvalidRequest;
import dev.tokend.v1.VerifyManyRequest;
import dev.tokend.v1.VerifyManyResponse;
import dev.tokend.v1.VerifyRequest;
import dev.tokend.v1.VerifyResponse;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * conformance/batching/cases.json (format: conformance/README.md "Batching cases"), read by
 * the Python, Go and Node clients' tests too: how {@link TokendClient#verifyMany} splits
 * requests into VerifyMany calls (each chunk and its encoded size), how the verify() queue
 * takes its batches by the same rule (over loopback, against a stand-in server that records
 * each RPC), and the exception a VerifyMany item's InvalidRequest becomes.
 */
class BatchingConformanceTest {

  private static Map<String, Object> file() throws Exception {
    return RepoFiles.readJson(RepoFiles.repoRoot().resolve("conformance/batching/cases.json"));
  }

  @SuppressWarnings("unchecked")
  private static List<Map<String, Object>> cases(String kind) throws Exception {
    return (List<Map<String, Object>>) file().get(kind);
  }

  @Test
  void theFileHasCasesOfBothKinds() throws Exception {
    // A runner that finds nothing to check must not pass.
    assertTrue(cases("split").size() >= 10 && cases("invalid").size() >= 5);
    assertEquals(TokendClient.MAX_BATCH_BYTES, ((Number) file().get("max_batch_bytes")).intValue());
  }

  @TestFactory
  Stream<DynamicTest> verifyManySplitsAsEachCaseSays() throws Exception {
    return cases("split").stream().map(c -> DynamicTest.dynamicTest((String) c.get("id"),
        () -> checkSplit(c)));
  }

  @TestFactory
  Stream<DynamicTest> theVerifyQueueTakesBatchesByTheSameRule() throws Exception {
    return cases("split").stream().map(c -> DynamicTest.dynamicTest((String) c.get("id"),
        () -> checkQueue(c)));
  }

  @TestFactory
  Stream<DynamicTest> anInvalidItemFailsAsAUnaryVerify() throws Exception {
    return cases("invalid").stream().map(c -> DynamicTest.dynamicTest((String) c.get("id"),
        () -> checkInvalid(c)));
  }

  @SuppressWarnings("unchecked")
  private static void checkSplit(Map<String, Object> c) {
    List<VerifyRequest> requests = new ArrayList<>();
    for (Object spec : (List<Object>) c.get("requests")) {
      requests.add(request((Map<String, Object>) spec));
    }
    int maxBatch = ((Number) c.get("max_batch")).intValue();
    List<List<Integer>> chunks = new ArrayList<>();
    List<Integer> sizes = new ArrayList<>();
    for (int start = 0, end; start < requests.size(); start = end) {
      end = TokendClient.chunkEnd(requests, start, maxBatch);
      chunks.add(IntStream.range(start, end).boxed().toList());
      sizes.add(VerifyManyRequest.newBuilder().addAllRequests(requests.subList(start, end))
          .build().getSerializedSize());
    }
    Map<String, Object> expect = (Map<String, Object>) c.get("expect");
    assertEquals(integers((List<Object>) expect.get("chunks")), chunks, "chunks");
    assertEquals(integers((List<Object>) expect.get("chunk_bytes")), sizes, "chunk bytes");
  }

  /** Records how many requests each RPC carries, in order of arrival. */
  static final class Recorder extends TokendClientTest.Stand {
    final List<Integer> rpcs = Collections.synchronizedList(new ArrayList<>());

    @Override
    public void verify(VerifyRequest request, StreamObserver<VerifyResponse> observer) {
      rpcs.add(1);
      super.verify(request, observer);
    }

    @Override
    public void verifyMany(VerifyManyRequest request, StreamObserver<VerifyManyResponse> observer) {
      rpcs.add(request.getRequestsCount());
      super.verifyMany(request, observer);
    }
  }

  /**
   * Every request of the case queued behind one Verify held in flight (maxInFlight 1), then
   * sent one batch at a time once it ends: the batches must be the case's chunks.
   */
  @SuppressWarnings("unchecked")
  private static void checkQueue(Map<String, Object> c) throws Exception {
    Recorder stand = new Recorder();
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(stand).build().start();
    ManagedChannel channel = TokendChannels.configure(
        NettyChannelBuilder.forAddress("127.0.0.1", server.getPort()).usePlaintext()).build();
    try {
      TokendClient client = TokendClient.builder(channel).maxInFlight(1)
          .maxBatch(((Number) c.get("max_batch")).intValue()).timeout(Duration.ofSeconds(30)).build();
      stand.gate = new CountDownLatch(1);
      CompletableFuture<VerifyResponse> first = client.verifyAsync(
          VerifyRequest.newBuilder().setToken("ok").setAudience("orders").build());
      long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while (stand.rpcs.isEmpty() && System.nanoTime() < end) {
        Thread.sleep(1);
      }
      List<CompletableFuture<VerifyResponse>> queued = new ArrayList<>();
      for (Object spec : (List<Object>) c.get("requests")) {
        queued.add(client.verifyAsync(request((Map<String, Object>) spec)));
      }
      assertEquals(List.of(1), stand.rpcs, "the queued calls wait for the slot");
      stand.gate.countDown();
      first.get(30, TimeUnit.SECONDS);
      for (CompletableFuture<VerifyResponse> answer : queued) {
        // Answered either way (an empty audience is refused): only the batches matter here.
        answer.handle((response, error) -> null).get(30, TimeUnit.SECONDS);
      }
      List<List<Integer>> batches = new ArrayList<>();
      int next = 0;
      for (int count : stand.rpcs.subList(1, stand.rpcs.size())) {
        batches.add(IntStream.range(next, next + count).boxed().toList());
        next += count;
      }
      Map<String, Object> expect = (Map<String, Object>) c.get("expect");
      assertEquals(integers((List<Object>) expect.get("chunks")), batches, "batches");
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  @SuppressWarnings("unchecked")
  private static void checkInvalid(Map<String, Object> c) {
    Map<String, Object> invalid = (Map<String, Object>) c.get("invalid");
    Map<String, Object> expect = (Map<String, Object>) c.get("expect");
    TokendException error = TokendClient.invalidArgument(InvalidRequest.newBuilder()
        .setField((String) invalid.get("field"))
        .setDescription((String) invalid.get("description"))
        .setReason((String) invalid.get("reason")).build());
    assertEquals(Status.Code.valueOf((String) expect.get("code")), error.code());
    assertEquals(expect.get("message"), error.serverMessage());
    assertEquals(expect.get("reason"), error.reason());
    assertEquals(expect.get("domain"), error.domain());
    assertEquals(expect.get("metadata"), error.metadata());
    List<Map<String, String>> violations = error.fieldViolations().stream()
        .map(v -> Map.of("field", v.field(), "description", v.description())).toList();
    assertEquals(expect.get("field_violations"), violations);
    assertEquals(expect.get("retry"), error.retryDelay().isPresent());
  }

  /** A case's request; the token is 'x' repeated token_length times (README). */
  @SuppressWarnings("unchecked")
  private static VerifyRequest request(Map<String, Object> spec) {
    return VerifyRequest.newBuilder()
        .setToken("x".repeat(((Number) spec.get("token_length")).intValue()))
        .setAudience((String) spec.get("audience"))
        .addAllRequiredScopes((List<String>) spec.get("required_scopes"))
        .build();
  }

  /** JSON numbers (Long or Double) as Integers, nested lists kept. */
  @SuppressWarnings("unchecked")
  private static List<Object> integers(List<Object> values) {
    return values.stream().map(v -> v instanceof List<?> list
        ? integers((List<Object>) list) : (Object) ((Number) v).intValue()).toList();
  }
}
