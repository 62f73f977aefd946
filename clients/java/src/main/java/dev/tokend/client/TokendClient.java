package dev.tokend.client;

import com.google.protobuf.Any;
import com.google.protobuf.CodedOutputStream;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import dev.tokend.v1.InvalidRequest;
import dev.tokend.v1.TokenServiceGrpc;
import dev.tokend.v1.VerifyManyRequest;
import dev.tokend.v1.VerifyManyResponse;
import dev.tokend.v1.VerifyManyResult;
import dev.tokend.v1.VerifyRequest;
import dev.tokend.v1.VerifyResponse;
import io.grpc.Channel;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Hand-written verify batcher, because grpc-java does not batch calls (each is its own RPC):
 * this class sends {@code verify()} calls that overlap in time as one {@code VerifyMany}, to
 * pay gRPC's per-call cost once per batch (issue 17; docs/clients.md, "Verify calls are
 * batched").
 *
 * <p>The RPC side of tokend's token checks, on a channel from {@link TokendChannels}. {@link
 * #verify} keeps the answers and errors of a plain {@code Verify} call: a lone call goes out as
 * unary {@code Verify} at once; while {@code maxInFlight} RPCs of this client are out, further
 * calls wait and then go together (at most {@code maxBatch}) as one {@code VerifyMany}. There is
 * no timer and no linger. Each call keeps its own deadline; a tokend without {@code VerifyMany}
 * (UNIMPLEMENTED) switches this client to unary calls for good. Thread-safe; it does not own
 * the channel.
 *
 * <pre>{@code
 * TokendClient tokend = TokendClient.builder(channel).maxInFlight(4).build();
 * VerifyResponse answer = tokend.verify(VerifyRequest.newBuilder()
 *     .setToken(token).setAudience("orders").build());     // throws TokendException
 * }</pre>
 */
public final class TokendClient {

  /** The most requests one VerifyMany may carry (the server refuses more). */
  public static final int MAX_VERIFY_MANY = 256;

  /**
   * The most bytes of requests in one VerifyMany, the same rule in every client: any tokend
   * takes a message of 64 KiB (one older than VerifyMany no more, and a larger message fails
   * the whole call with RESOURCE_EXHAUSTED before it could answer UNIMPLEMENTED; behind a
   * balancer the next call may reach such a tokend even after another answered a VerifyMany),
   * so batches stay below that with room for framing. A request larger than this goes alone.
   */
  static final int MAX_BATCH_BYTES = 60 * 1024;

  private static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(5);
  private static final Logger LOG = Logger.getLogger(TokendClient.class.getName());

  /** Fires the deadlines of waiting calls; one daemon thread for every client. */
  private static final ScheduledThreadPoolExecutor TIMERS = timers();

  private final TokenServiceGrpc.TokenServiceStub stub;
  private final boolean batchVerify;
  private final int maxInFlight;
  private final int maxBatch;
  private final Duration timeout;

  private final Object lock = new Object();
  private final ArrayDeque<Item> queue = new ArrayDeque<>();
  private int inFlight;
  /** Set once tokend answered UNIMPLEMENTED to VerifyMany: an older server. */
  private volatile boolean unaryOnly;

  private TokendClient(Builder builder) {
    this.stub = TokenServiceGrpc.newStub(builder.channel);
    this.batchVerify = builder.batchVerify;
    this.maxInFlight = builder.maxInFlight;
    this.maxBatch = builder.maxBatch;
    this.timeout = builder.timeout;
  }

  /**
   * A client with the defaults: batching on, 4 RPCs in flight, 64 requests per batch, 5 s.
   *
   * @param channel a channel from {@link TokendChannels} (the client does not close it)
   * @return the client
   */
  public static TokendClient of(Channel channel) {
    return builder(channel).build();
  }

  /**
   * @param channel a channel from {@link TokendChannels} (the client does not close it)
   * @return a builder for the options
   */
  public static Builder builder(Channel channel) {
    return new Builder(channel);
  }

  /** Options of a {@link TokendClient}. */
  public static final class Builder {
    private final Channel channel;
    private boolean batchVerify = true;
    private int maxInFlight = 4;
    private int maxBatch = 64;
    private Duration timeout = DEFAULT_TIMEOUT;

    private Builder(Channel channel) {
      this.channel = Objects.requireNonNull(channel, "channel");
    }

    /**
     * @param on false: every {@code verify()} is its own unary Verify, as with the stub, and
     *     {@code verifyMany} sends unary calls too (default true)
     * @return this builder
     */
    public Builder batchVerify(boolean on) {
      this.batchVerify = on;
      return this;
    }

    /**
     * @param count at most this many Verify/VerifyMany RPCs of {@code verify()} calls at once,
     *     1-1024 (default 4); calls beyond wait and go in the next batch ({@code verifyMany}
     *     sends its chunks at once, outside this count)
     * @return this builder
     */
    public Builder maxInFlight(int count) {
      if (count < 1 || count > 1024) {
        throw new IllegalArgumentException("maxInFlight must be 1-1024");
      }
      this.maxInFlight = count;
      return this;
    }

    /**
     * @param count at most this many requests per VerifyMany sent for {@code verify()}, 1-256
     *     (default 64)
     * @return this builder
     */
    public Builder maxBatch(int count) {
      if (count < 1 || count > MAX_VERIFY_MANY) {
        throw new IllegalArgumentException("maxBatch must be 1-" + MAX_VERIFY_MANY);
      }
      this.maxBatch = count;
      return this;
    }

    /**
     * @param deadline the deadline of a call that names none, waiting included (default 5 s,
     *     Verify's in the shared service config, which also caps it)
     * @return this builder
     */
    public Builder timeout(Duration deadline) {
      this.timeout = positive(deadline);
      return this;
    }

    /** @return the client */
    public TokendClient build() {
      return new TokendClient(this);
    }
  }

  /**
   * Asks tokend whether a token is valid, within the client's timeout.
   *
   * @param request the Verify request
   * @return tokend's answer: {@code valid}, or not valid with a {@code reason}
   * @throws TokendException what the Verify RPC failed with (INVALID_ARGUMENT for a bad
   *     request, DEADLINE_EXCEEDED, UNAVAILABLE...)
   */
  public VerifyResponse verify(VerifyRequest request) {
    return verify(request, timeout);
  }

  /**
   * Asks tokend whether {@code token} is valid for {@code audience}.
   *
   * @param token the access token
   * @param audience the audience the caller expects
   * @return tokend's answer
   * @throws TokendException as {@link #verify(VerifyRequest)}
   */
  public VerifyResponse verify(String token, String audience) {
    return verify(VerifyRequest.newBuilder().setToken(token).setAudience(audience).build());
  }

  /**
   * As {@link #verify(VerifyRequest)} with a deadline of its own.
   *
   * @param request the Verify request
   * @param deadline the deadline, waiting in the batcher included
   * @return tokend's answer
   * @throws TokendException as {@link #verify(VerifyRequest)}; CANCELLED when interrupted
   */
  public VerifyResponse verify(VerifyRequest request, Duration deadline) {
    CompletableFuture<VerifyResponse> answer = verifyAsync(request, deadline);
    try {
      // The item's own timer ends it by its deadline; the extra second only guards that.
      return answer.get(positive(deadline).toMillis() + 1_000, TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      answer.cancel(false);
      Thread.currentThread().interrupt();
      throw error(Status.CANCELLED.withDescription("verify() interrupted").withCause(e));
    } catch (ExecutionException e) {
      throw TokendException.from(e.getCause());
    } catch (TimeoutException e) {
      answer.cancel(false);
      throw deadlineExceeded();
    }
  }

  /**
   * As {@link #verify(VerifyRequest)}, without blocking. Cancelling the future drops the call
   * (a waiting one is not sent, a unary one is cancelled); so does cancelling the gRPC {@link
   * Context} it was made in, whose deadline also applies.
   *
   * @param request the Verify request
   * @return the answer, or completed exceptionally with a {@link TokendException}
   */
  public CompletableFuture<VerifyResponse> verifyAsync(VerifyRequest request) {
    return verifyAsync(request, timeout);
  }

  /**
   * As {@link #verifyAsync(VerifyRequest)} with a deadline of its own.
   *
   * @param request the Verify request
   * @param deadline the deadline, waiting in the batcher included
   * @return the answer, or completed exceptionally with a {@link TokendException}
   */
  public CompletableFuture<VerifyResponse> verifyAsync(VerifyRequest request, Duration deadline) {
    Item item = newItem(request, deadline);
    if (!batchVerify || unaryOnly) {
      sendUnary(item, false);
    } else {
      synchronized (lock) {
        queue.add(item);
      }
      drain();
    }
    return item.result;
  }

  /**
   * Verifies many tokens, in VerifyMany calls of up to 256 requests (sent at once), for a
   * caller that already holds them; unary calls when batching is off or tokend lacks it.
   *
   * @param requests the requests (no nulls)
   * @return one outcome per request, in order: a response, or the error a single
   *     {@link #verify} would have thrown
   */
  public List<VerifyOutcome> verifyMany(List<VerifyRequest> requests) {
    return verifyMany(requests, timeout);
  }

  /**
   * As {@link #verifyMany(List)} with a deadline for the whole.
   *
   * @param requests the requests (no nulls)
   * @param deadline the deadline of every request
   * @return one outcome per request, in order
   */
  public List<VerifyOutcome> verifyMany(List<VerifyRequest> requests, Duration deadline) {
    List<Item> items = new ArrayList<>(requests.size());
    for (VerifyRequest request : requests) {
      items.add(newItem(request, deadline));
    }
    List<VerifyRequest> ordered = items.stream().map(item -> item.request).toList();
    int start = 0;
    while (start < items.size()) {
      int end = chunkEnd(ordered, start, MAX_VERIFY_MANY);
      List<Item> chunk = items.subList(start, end);
      if (chunk.size() == 1 || !batchVerify || unaryOnly) {
        chunk.forEach(item -> sendUnary(item, false));
      } else {
        sendMany(List.copyOf(chunk), false);
      }
      start = end;
    }
    List<VerifyOutcome> outcomes = new ArrayList<>(items.size());
    for (Item item : items) {
      outcomes.add(await(item, deadline));
    }
    return outcomes;
  }

  private static VerifyOutcome await(Item item, Duration deadline) {
    try {
      return VerifyOutcome.of(item.result.get(deadline.toMillis() + 1_000, TimeUnit.MILLISECONDS));
    } catch (InterruptedException e) {
      item.fail(error(Status.CANCELLED.withDescription("verifyMany() interrupted").withCause(e)));
      Thread.currentThread().interrupt();
      return VerifyOutcome.failed(error(Status.CANCELLED.withDescription("verifyMany() interrupted")));
    } catch (ExecutionException e) {
      return VerifyOutcome.failed(TokendException.from(e.getCause()));
    } catch (TimeoutException e) {
      item.fail(deadlineExceeded());
      return VerifyOutcome.failed(deadlineExceeded());
    }
  }

  // ---------------------------------------------------------------------------------------
  // The batcher

  /** One call: its request, its own deadline and the future its caller holds. */
  private static final class Item {
    final VerifyRequest request;
    final long deadlineNanos;
    final CompletableFuture<VerifyResponse> result = new CompletableFuture<>();

    Item(VerifyRequest request, long deadlineNanos) {
      this.request = request;
      this.deadlineNanos = deadlineNanos;
    }

    void succeed(VerifyResponse response) {
      result.complete(response);
    }

    void fail(TokendException error) {
      result.completeExceptionally(error);
    }

    long remainingNanos() {
      return deadlineNanos - System.nanoTime();
    }
  }

  private Item newItem(VerifyRequest request, Duration deadline) {
    Objects.requireNonNull(request, "request");
    long remaining = positive(deadline).toNanos();
    Context context = Context.current();
    Deadline inherited = context.getDeadline();
    if (inherited != null) {
      remaining = Math.min(remaining, inherited.timeRemaining(TimeUnit.NANOSECONDS));
    }
    Item item = new Item(request, System.nanoTime() + remaining);
    if (remaining <= 0) {
      item.fail(deadlineExceeded());
      return item;
    }
    // A waiting item fails at its deadline without waiting for its batch.
    ScheduledFuture<?> timer =
        TIMERS.schedule(() -> item.fail(deadlineExceeded()), remaining, TimeUnit.NANOSECONDS);
    Context.CancellationListener cancelled =
        c -> item.fail(error(Status.CANCELLED.withDescription("the caller's Context was cancelled")
            .withCause(c.cancellationCause())));
    context.addListener(cancelled, Runnable::run);
    item.result.whenComplete((response, thrown) -> {
      timer.cancel(false);
      context.removeListener(cancelled);
    });
    return item;
  }

  /** Sends what waits while fewer than maxInFlight RPCs are out. */
  private void drain() {
    while (true) {
      List<Item> batch;
      synchronized (lock) {
        if (inFlight >= maxInFlight) {
          return;
        }
        batch = takeBatch();
        if (batch.isEmpty()) {
          return;
        }
        inFlight++;
      }
      if (batch.size() == 1) {
        sendUnary(batch.get(0), true);
      } else if (unaryOnly) {
        batch.forEach(item -> sendUnary(item, false));
        release();
      } else {
        sendMany(batch, true);
      }
    }
  }

  /** Up to maxBatch waiting items within MAX_BATCH_BYTES, skipping those already ended. */
  private List<Item> takeBatch() {
    List<Item> batch = new ArrayList<>();
    long bytes = 0;
    while (!queue.isEmpty() && batch.size() < maxBatch) {
      Item next = queue.peekFirst();
      if (next.result.isDone()) {
        queue.pollFirst();
        continue;
      }
      int size = entryBytes(next.request);
      if (!batch.isEmpty() && bytes + size > MAX_BATCH_BYTES) {
        break;
      }
      queue.pollFirst();
      batch.add(next);
      bytes += size;
    }
    return batch;
  }

  /**
   * Where the chunk of {@code requests} from {@code start} ends: {@code maxCount} requests
   * (MAX_VERIFY_MANY for verifyMany) and MAX_BATCH_BYTES at most, unless it is a single one.
   * conformance/batching/cases.json holds the cases every client's split passes.
   */
  static int chunkEnd(List<VerifyRequest> requests, int start, int maxCount) {
    int end = start;
    long bytes = 0;
    while (end < requests.size() && end - start < maxCount) {
      int size = entryBytes(requests.get(end));
      if (end > start && bytes + size > MAX_BATCH_BYTES) {
        break;
      }
      bytes += size;
      end++;
    }
    return end;
  }

  /** What {@code request} adds to a VerifyManyRequest (field 1: tag, length, message). */
  static int entryBytes(VerifyRequest request) {
    return CodedOutputStream.computeMessageSize(VerifyManyRequest.REQUESTS_FIELD_NUMBER, request);
  }

  private void release() {
    synchronized (lock) {
      inFlight--;
    }
    drain();
  }

  /** One unary Verify for {@code item}; {@code counted}: it holds one of the maxInFlight slots. */
  private void sendUnary(Item item, boolean counted) {
    long remaining = item.remainingNanos();
    if (item.result.isDone() || remaining <= 0) {
      item.fail(deadlineExceeded());
      if (counted) {
        release();
      }
      return;
    }
    AtomicBoolean finished = new AtomicBoolean();
    AtomicReference<ClientCallStreamObserver<VerifyRequest>> started = new AtomicReference<>();
    ClientResponseObserver<VerifyRequest, VerifyResponse> observer = new ClientResponseObserver<>() {
      private VerifyResponse response;

      @Override
      public void beforeStart(ClientCallStreamObserver<VerifyRequest> call) {
        started.set(call);
      }

      @Override
      public void onNext(VerifyResponse value) {
        response = value;
      }

      @Override
      public void onError(Throwable thrown) {
        end(() -> item.fail(TokendException.from(thrown)));
      }

      @Override
      public void onCompleted() {
        end(() -> item.succeed(response));
      }

      private void end(Runnable outcome) {
        if (finished.compareAndSet(false, true)) {
          if (counted) {
            release();
          }
          outcome.run();
        }
      }
    };
    if (!start(() -> stub.withDeadlineAfter(remaining, TimeUnit.NANOSECONDS)
        .verify(item.request, observer), observer)) {
      return;
    }
    // The caller gave up (cancelled, its deadline): end the RPC as well. Only once started:
    // a ClientCall cancelled before its start() refuses to start.
    item.result.whenComplete((r, t) -> {
      ClientCallStreamObserver<VerifyRequest> call = started.get();
      if (!finished.get() && call != null) {
        call.cancel("verify() ended", null);
      }
    });
  }

  /**
   * Starts an RPC in a fork of the current Context, so that it does not die with the Context
   * of whichever thread sends it (the items' own deadlines and cancellation stand for their
   * callers'). A call that throws as it starts ends through {@code observer} like any error.
   */
  private static boolean start(Runnable call, ClientResponseObserver<?, ?> observer) {
    try {
      Context.current().fork().run(call);
      return true;
    } catch (RuntimeException e) {
      observer.onError(e);
      return false;
    }
  }

  /** One VerifyMany for {@code batch} (2-256 items); its deadline is the latest of theirs. */
  private void sendMany(List<Item> batch, boolean counted) {
    long latest = batch.stream().mapToLong(Item::remainingNanos).max().orElse(0);
    if (latest <= 0) {
      batch.forEach(item -> item.fail(deadlineExceeded()));
      if (counted) {
        release();
      }
      return;
    }
    VerifyManyRequest.Builder request = VerifyManyRequest.newBuilder();
    batch.forEach(item -> request.addRequests(item.request));
    AtomicBoolean finished = new AtomicBoolean();
    ClientResponseObserver<VerifyManyRequest, VerifyManyResponse> observer =
        new ClientResponseObserver<>() {
          private VerifyManyResponse response;

          @Override
          public void beforeStart(ClientCallStreamObserver<VerifyManyRequest> call) {}

          @Override
          public void onNext(VerifyManyResponse value) {
            response = value;
          }

          @Override
          public void onError(Throwable thrown) {
            if (!finished.compareAndSet(false, true)) {
              return;
            }
            if (Status.fromThrowable(thrown).getCode() == Status.Code.UNIMPLEMENTED) {
              switchToUnary();
              if (counted) {
                release();
              }
              batch.forEach(item -> sendUnary(item, false));
              return;
            }
            if (counted) {
              release();
            }
            // What fails the whole call fails each of its items as a unary call would.
            batch.forEach(item -> item.fail(TokendException.from(thrown)));
          }

          @Override
          public void onCompleted() {
            if (!finished.compareAndSet(false, true)) {
              return;
            }
            if (counted) {
              release();
            }
            deliver(batch, response);
          }
        };
    // The answer fits gRPC's default 4 MiB receive limit: tokend's answer to a request takes
    // at most twice its size plus 2 KiB (app.py max_response_bytes), so under 1.2 MiB here.
    start(() -> stub.withDeadlineAfter(latest, TimeUnit.NANOSECONDS)
        .verifyMany(request.build(), observer), observer);
  }

  private void switchToUnary() {
    if (!unaryOnly) {
      unaryOnly = true;
      LOG.log(Level.INFO, "tokend answered UNIMPLEMENTED to VerifyMany (an older server): this "
          + "TokendClient sends unary Verify calls from now on");
    }
  }

  private static void deliver(List<Item> batch, VerifyManyResponse response) {
    if (response == null || response.getResultsCount() != batch.size()) {
      // Fail closed: answers that cannot be matched to their requests are no answers.
      int got = response == null ? 0 : response.getResultsCount();
      batch.forEach(item -> item.fail(error(Status.INTERNAL.withDescription(
          "tokend answered " + got + " results to " + batch.size() + " requests"))));
      return;
    }
    for (int i = 0; i < batch.size(); i++) {
      VerifyManyResult result = response.getResults(i);
      switch (result.getOutcomeCase()) {
        case RESPONSE -> batch.get(i).succeed(result.getResponse());
        case INVALID -> batch.get(i).fail(invalidArgument(result.getInvalid()));
        default -> batch.get(i).fail(error(Status.INTERNAL.withDescription(
            "tokend answered a VerifyMany result with no outcome")));
      }
    }
  }

  /**
   * The exception a unary Verify raises for this refusal: INVALID_ARGUMENT with tokend's
   * ErrorInfo (reason, domain, method and field) and BadRequest, the description as message.
   */
  static TokendException invalidArgument(InvalidRequest invalid) {
    String field = invalid.getField();
    // The server names the reason (proto InvalidRequest.reason), as its ErrorInfo would.
    String reason = invalid.getReason().isEmpty() ? "INVALID_REQUEST" : invalid.getReason();
    ErrorInfo.Builder info = ErrorInfo.newBuilder().setDomain(TokendException.DOMAIN)
        .setReason(reason)
        .putMetadata("method", "Verify");
    com.google.rpc.Status.Builder status = com.google.rpc.Status.newBuilder()
        .setCode(Status.Code.INVALID_ARGUMENT.value()).setMessage(invalid.getDescription());
    if (field.isEmpty()) {
      status.addDetails(Any.pack(info.build()));
    } else {
      status.addDetails(Any.pack(info.putMetadata("field", field).build()));
      status.addDetails(Any.pack(BadRequest.newBuilder().addFieldViolations(
          BadRequest.FieldViolation.newBuilder().setField(field)
              .setDescription(invalid.getDescription())).build()));
    }
    return TokendException.from(StatusProto.toStatusRuntimeException(status.build()));
  }

  private static TokendException deadlineExceeded() {
    return error(Status.DEADLINE_EXCEEDED.withDescription("verify() deadline exceeded"));
  }

  private static TokendException error(Status status) {
    return TokendException.from(status.asRuntimeException());
  }

  private static Duration positive(Duration deadline) {
    if (deadline == null || deadline.isNegative() || deadline.isZero()) {
      throw new IllegalArgumentException("a deadline must be positive");
    }
    return deadline;
  }

  private static ScheduledThreadPoolExecutor timers() {
    ScheduledThreadPoolExecutor timers = new ScheduledThreadPoolExecutor(1, runnable -> {
      Thread thread = new Thread(runnable, "tokend-verify-deadlines");
      thread.setDaemon(true);
      return thread;
    });
    timers.setRemoveOnCancelPolicy(true);
    return timers;
  }
}
